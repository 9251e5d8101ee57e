"""What the monitoring domain needs from the outside, as Protocols."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
from sqlmodel import SQLModel


class Embedder(Protocol):
    """Sentence embeddings (all-MiniLM-L6-v2 in production, a fake in unit tests)."""

    def encode(self, texts: Sequence[str]) -> np.ndarray: ...


class Repository(Protocol):
    """Monitoring's tables, through the unit of work's session."""

    def add(self, row: SQLModel) -> None: ...

    def model(self, name: str) -> Any: ...

    def models(self) -> list[Any]: ...

    def decision(self, decision_id: int) -> Any: ...

    def recent(self, table: type[SQLModel], limit: int = 200) -> list[Any]: ...
