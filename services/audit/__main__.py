"""`python -m services.audit`: the append-only audit trail (port 9108)."""

from services.audit.app import build
from services.audit.config import DEFAULT_PORT
from shared.runtime import run_app

if __name__ == "__main__":
    runtime, app = build()
    run_app(app, runtime, DEFAULT_PORT)
