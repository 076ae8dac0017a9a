"""TSCNC core (torch-free at import time; heavy modules load on first use)."""
__version__ = "0.1.0"
