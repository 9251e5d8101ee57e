"""Composition root: settings -> runtime -> generator, evaluator, runner -> handlers, API."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from faststream.asgi import AsgiFastStream

from services.evaluation import handlers
from services.evaluation.adapters import store  # noqa: F401 (tables before create_all)
from services.evaluation.adapters.engine import ModelDirs, SubprocessGenerator
from services.evaluation.adapters.judge_client import GatewayJudge
from services.evaluation.api import build_api
from services.evaluation.config import EvaluationSettings
from services.evaluation.domain import Evaluator
from services.evaluation.ports import Generator, Judge
from services.evaluation.service import EvaluationRunner
from shared.runtime import Runtime, build_runtime, key_registry, make_app


def build(
    settings: EvaluationSettings | None = None,
    generator: Generator | None = None,
    judge: Judge | None = None,
) -> tuple[Runtime, AsgiFastStream]:
    """The runtime and the ASGI app; ``generator`` replaces the vLLM child process (tests)."""
    settings = settings or EvaluationSettings()
    runtime = build_runtime(settings, "evaluation")
    judge = judge or (
        GatewayJudge(settings.judge, settings.judge_key or settings.admin_secret())
        if settings.judge
        else None
    )
    evaluator = Evaluator(generator or SubprocessGenerator(settings), settings, judge)
    runner = EvaluationRunner(runtime, settings, evaluator, ModelDirs(settings, runtime.artifacts))
    handlers.register(runtime.bus, settings.consumer_group, runner.kick)
    runtime.state.update(runner=runner, settings=settings)
    runtime.checks["runner"] = runner.alive

    @asynccontextmanager
    async def lifespan(_runtime: Runtime) -> AsyncIterator[None]:
        await runner.start()
        try:
            yield
        finally:
            await runner.stop()

    app = make_app(runtime, lifespan=lifespan)
    # /healthz and /metrics match exactly; every other path goes to the registry API
    keys = key_registry(runtime)  # the platform's API keys: changes need an admin key
    runtime.checks["key_registry"] = keys.loaded
    app.not_found = build_api(runtime, keys, runner.kick)  # type: ignore[method-assign]
    return runtime, app
