from tscnc.cli import main

main()
