"""`python -m services.serving.gateway` (port LLMOPS_GATEWAY_PORT, else the admin port, 8000)."""

import uvicorn

from services.serving.gateway.app import build, port
from services.serving.gateway.config import GatewaySettings

if __name__ == "__main__":
    settings = GatewaySettings()
    runtime, app = build(settings)
    uvicorn.run(
        app,
        host=settings.host,
        port=port(settings),
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=10,
    )
