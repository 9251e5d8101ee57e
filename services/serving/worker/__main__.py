"""`python -m services.serving.worker` (admin port 9106)."""

from services.serving.worker.app import build
from shared.runtime import run_app

if __name__ == "__main__":  # vLLM spawns processes: this guard is required
    runtime, app = build()
    run_app(app, runtime, default_port=9106, fast_loop=True)
