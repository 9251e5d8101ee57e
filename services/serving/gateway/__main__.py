"""`python -m services.serving.gateway` (port LLMOPS_GATEWAY_PORT, else the admin port, 8000).

With ``LLMOPS_GATEWAY_WORKERS`` > 1, uvicorn starts that many gateway processes on the one
listening socket; each is a gateway instance of its own (own reply topic, own limits)."""

from typing import Any

import uvicorn

from services.serving.gateway.app import build, port
from services.serving.gateway.config import GatewaySettings
from shared.cpus import keep_off_engine_cores

if __name__ == "__main__":
    settings = GatewaySettings()
    options: dict[str, Any] = {
        "host": settings.host,
        "port": port(settings),
        "log_level": "warning",
        "access_log": False,
        "timeout_graceful_shutdown": 10,
    }
    if settings.workers > 1:
        app_path = "services.serving.gateway.app:create_app"
        # uvicorn kills and replaces a process that does not answer its health ping in time
        # (5 s by default): a busy machine must not cost a gateway its streams and reply topic
        options["timeout_worker_healthcheck"] = 30
        uvicorn.run(app_path, factory=True, workers=settings.workers, **options)
    else:
        runtime, app = build(settings)
        keep_off_engine_cores(settings.keep_off_engine_cores_s)  # off a local engine's cores
        uvicorn.run(app, **options)
