"""The services of DESIGN.md and how `llmops up` runs each of their processes."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass


@dataclass(frozen=True)
class ProcessSpec:
    """One OS process of a service: ``python -m <module>``, health on ``port``."""

    service: str
    name: str
    module: str
    port: int
    health_path: str = "/healthz"
    startup_timeout_s: float = 120.0

    @property
    def label(self) -> str:
        return self.name if self.name == self.service else f"{self.service}-{self.name}"

    def available(self) -> bool:
        try:
            return importlib.util.find_spec(self.module) is not None
        except ModuleNotFoundError:
            return False


# Start order follows the data flow; every process gets its admin port from here
# (LLMOPS_ADMIN_PORT), the gateway serves its API and /healthz on the same port.
CATALOGUE: tuple[ProcessSpec, ...] = (
    ProcessSpec("ingestion", "ingestion", "services.ingestion", 9101),
    ProcessSpec("anonymization", "anonymization", "services.anonymization", 9102),
    ProcessSpec("labeling", "labeling", "services.labeling", 9103),
    ProcessSpec("training", "training", "services.training", 9104),
    ProcessSpec("evaluation", "evaluation", "services.evaluation", 9105),
    ProcessSpec("serving", "worker", "services.serving.worker", 9106, startup_timeout_s=300.0),
    ProcessSpec("serving", "gateway", "services.serving.gateway", 8000),
    ProcessSpec("monitoring", "monitoring", "services.monitoring", 9107),
)


def available_processes(only: set[str] | None = None) -> list[ProcessSpec]:
    """Processes whose module is installed, filtered by service or process label."""
    chosen = [p for p in CATALOGUE if p.available()]
    if only:
        unknown = only - {p.service for p in CATALOGUE} - {p.label for p in CATALOGUE}
        if unknown:
            raise ValueError(f"unknown service(s): {', '.join(sorted(unknown))}")
        chosen = [p for p in chosen if p.service in only or p.label in only]
    return chosen
