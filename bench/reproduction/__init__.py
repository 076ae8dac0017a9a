"""The parts of ``bench/reproduce.py`` (the script keeps the command line): :mod:`.runs` (specs,
sweeps, results files), :mod:`.claims` (the verdicts), :mod:`.tuning` (the λ/a search) and
:mod:`.writeup` (the report)."""
