"""``python -m services.labeling``: API, UI and bus handlers on LLMOPS_LABELING_PORT (8100)."""

import uvicorn

from services.labeling.app import build
from services.labeling.config import LabelingSettings

if __name__ == "__main__":
    settings = LabelingSettings()
    runtime, app = build(settings)
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.serve_port(),
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=10,
    )
