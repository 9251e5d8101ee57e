"""``python -m services.evaluation``: serve evaluation and the model registry."""

from services.evaluation.app import build
from services.evaluation.config import DEFAULT_ADMIN_PORT
from shared.runtime import run_app

if __name__ == "__main__":
    runtime, app = build()
    run_app(app, runtime, DEFAULT_ADMIN_PORT)
