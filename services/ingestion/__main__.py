"""``python -m services.ingestion``: serve the ingestion service."""

from services.ingestion.app import build
from services.ingestion.config import DEFAULT_ADMIN_PORT
from shared.runtime import run_app

if __name__ == "__main__":
    runtime, app = build()
    run_app(app, runtime, DEFAULT_ADMIN_PORT)
