"""`python -m services.monitoring`: dashboards, API, /healthz and /metrics on port 8200."""

from services.monitoring.app import build, serve
from services.monitoring.config import MonitoringSettings

if __name__ == "__main__":
    settings = MonitoringSettings()
    runtime, app = build(settings)
    serve(app, settings)
