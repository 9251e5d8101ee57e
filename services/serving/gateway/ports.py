"""What the gateway's use cases need from the outside world, as Protocols."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from services.serving.gateway.keys import KeyInfo, Role
from shared.events import ApiKeyChanged, Event
from shared.wire import Chunk

Reply = Event | Chunk


class KeyLookup(Protocol):
    def lookup(self, secret: str) -> KeyInfo | None: ...


class KeyStore(KeyLookup, Protocol):
    def add(
        self,
        secret: str,
        name: str,
        role: Role,
        rpm: int,
        tpm: int,
        *,
        public_key: str = "",
        expires_at: datetime | None = None,
    ) -> KeyInfo: ...

    def public_key_taken(self, public_key: str) -> bool: ...

    def list(self) -> list[tuple[KeyInfo, datetime, bool]]: ...

    def revoke(self, key_id: str) -> bool: ...

    def record(self, key_id: str) -> ApiKeyChanged | None: ...

    def records(self) -> Sequence[ApiKeyChanged]: ...


class Publisher(Protocol):
    async def publish(self, event: Event) -> Event: ...


class Replies(Protocol):
    """The gateway's reply topic, routed to the request waiting for each reply."""

    def open(self, request_id: str) -> asyncio.Queue[Reply]: ...

    def close(self, request_id: str) -> None: ...


class Canceller(Protocol):
    """Tells the workers a request's caller is gone (its generation should stop)."""

    async def cancel(self, request_id: str) -> None: ...


class Embedder(Protocol):
    """Sentence embeddings for /v1/embeddings."""

    name: str

    async def embed(self, texts: list[str]) -> tuple[list[list[float]], int]:
        """One vector per text, and the number of input tokens."""
        ...
