"""``python -m backend``: serve the API (settings from the environment, see backend/settings.py)."""

from backend.app import run_server

if __name__ == "__main__":
    run_server()
