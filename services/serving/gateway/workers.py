"""Which workers are alive and what they serve, from their heartbeats. Pure."""

from __future__ import annotations

from dataclasses import dataclass

from shared.events.serving import WorkerHeartbeat


@dataclass
class _Seen:
    beat: WorkerHeartbeat
    at: float


class WorkerDirectory:
    def __init__(self, timeout_s: float = 3.5) -> None:
        self.timeout_s = timeout_s
        self.workers: dict[str, _Seen] = {}

    def observe(self, beat: WorkerHeartbeat, now: float) -> None:
        if beat.status == "stopping":
            self.workers.pop(beat.worker_id, None)
        else:
            self.workers[beat.worker_id] = _Seen(beat, now)

    def live(self, now: float) -> list[WorkerHeartbeat]:
        limit = self.timeout_s
        return [s.beat for s in self.workers.values() if now - s.at <= limit]

    def models(self, now: float) -> dict[str, set[str]]:
        """Model name -> versions served by live workers."""
        out: dict[str, set[str]] = {}
        for beat in self.live(now):
            for model in beat.models:
                out.setdefault(model.name, set()).add(model.version)
        return out
