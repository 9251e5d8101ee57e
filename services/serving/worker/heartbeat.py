"""The worker's heartbeat: the gateways learn who is alive and what it serves."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from services.serving.wire import HEARTBEAT_TOPIC
from services.serving.worker.config import WorkerSettings
from services.serving.worker.engines import EnginePool
from services.serving.worker.ports import ReplySink
from services.serving.worker.routing import ModelTable
from shared.events.serving import ServedModel, WorkerHeartbeat

log = logging.getLogger(__name__)


@dataclass
class Heartbeat:
    settings: WorkerSettings
    worker_id: str
    table: ModelTable
    pool: EnginePool
    sink: ReplySink

    def event(self, status: str) -> WorkerHeartbeat:
        return WorkerHeartbeat(
            worker_id=self.worker_id,
            producer="serving-worker",
            models=[
                ServedModel(name=v.name, version=v.version, alias=alias, traffic_share=share)
                for v, alias, share in self.table.served()
            ],
            in_flight=self.pool.in_flight,
            capacity=self.settings.max_in_flight,
            status=status,
            interval_s=self.settings.heartbeat_s,
        )

    async def beat(self, status: str = "ready") -> None:
        try:
            await self.sink.send(HEARTBEAT_TOPIC, self.event(status), self.worker_id)
        except Exception as exc:  # a broker hiccup must not stop the beats
            log.warning("heartbeat not sent", extra={"error": repr(exc)})

    async def run(self) -> None:
        while True:
            await self.beat()
            await asyncio.sleep(self.settings.heartbeat_s)
