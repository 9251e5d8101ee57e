"""`python -m services.serving.worker` (admin port 9106)."""

from services.serving.worker.app import build
from shared.cpus import keep_off_engine_cores
from shared.runtime import run_app

if __name__ == "__main__":  # vLLM spawns processes: this guard is required
    runtime, app = build()
    # the Kafka side off the engine's OpenMP cores once they are bound (shared.cpus)
    keep_off_engine_cores(runtime.settings.keep_off_engine_cores_s)
    run_app(app, runtime, default_port=9106, fast_loop=True)
