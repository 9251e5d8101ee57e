"""Follow a run on the bus: progress events drive a callback until the model or a failure."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Callable

from shared.client import PlatformClient
from shared.events import ModelTrained, TrainingProgressed
from shared.topics import Topic


async def follow_run(
    client: PlatformClient,
    run_id: uuid.UUID,
    on_progress: Callable[[TrainingProgressed], None],
    idle_timeout_s: float,
) -> ModelTrained | TrainingProgressed:
    """The run's ModelTrained, or its ``failed`` TrainingProgressed.

    TimeoutError when ``idle_timeout_s`` pass without any news of the run: a slow run that keeps
    reporting progress is followed to its end, however long it takes on this machine.
    """
    found: asyncio.Queue[ModelTrained | TrainingProgressed] = asyncio.Queue()
    last_news = asyncio.get_running_loop().time()

    async def progress() -> None:
        async for event in client.stream(Topic.TRAINING_PROGRESSED, from_beginning=True):
            if isinstance(event, TrainingProgressed) and event.run_id == run_id:
                nonlocal last_news
                last_news = asyncio.get_running_loop().time()
                on_progress(event)
                if event.status == "failed":
                    await found.put(event)

    async def trained() -> None:
        async for event in client.stream(Topic.MODEL_TRAINED, from_beginning=True):
            if isinstance(event, ModelTrained) and event.run_id == run_id:
                await found.put(event)

    tasks = [asyncio.create_task(progress()), asyncio.create_task(trained())]
    loop = asyncio.get_running_loop()
    try:
        while True:
            wait = last_news + idle_timeout_s - loop.time()
            if wait <= 0:
                raise TimeoutError(f"no news of run {run_id} for {idle_timeout_s:.0f}s")
            with contextlib.suppress(TimeoutError):
                return await asyncio.wait_for(found.get(), timeout=wait)
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
