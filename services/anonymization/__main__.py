"""`python -m services.anonymization`: the anonymization service (admin port 9102)."""

from services.anonymization.app import DEFAULT_PORT, build
from shared.runtime import run_app

if __name__ == "__main__":
    runtime, app = build()
    run_app(app, runtime, default_port=DEFAULT_PORT)
