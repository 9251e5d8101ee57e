"""``python -m services.training``: serve the training service."""

from services.training.app import build
from services.training.config import DEFAULT_ADMIN_PORT
from shared.runtime import run_app

if __name__ == "__main__":
    runtime, app = build()
    run_app(app, runtime, DEFAULT_ADMIN_PORT)
