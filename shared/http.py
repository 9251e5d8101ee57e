"""Bounded request bodies for the platform's HTTP APIs.

A body is limited while it is read, chunk by chunk: a declared ``Content-Length`` over the
limit is refused before anything is read, and a chunked body (no length) is cut off as soon
as it passes the limit, so no API holds or parses more than its limit, before or after auth.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodyTooLargeError(HTTPException):
    """413. A starlette ``HTTPException``, so FastAPI's body parsing lets it through."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"Request body over {limit} bytes.")
        self.limit = limit


def _declared_over(headers: Any, limit: int) -> bool:
    declared = headers.get("content-length") if headers is not None else None
    return bool(declared and declared.isdigit() and int(declared) > limit)


async def read_body(request: Request, limit: int) -> bytes:
    """The request's body, at most ``limit`` bytes (``BodyTooLargeError`` past it)."""
    if _declared_over(request.headers, limit):
        raise BodyTooLargeError(limit)
    body = bytearray()
    async for piece in request.stream():
        body += piece
        if len(body) > limit:
            raise BodyTooLargeError(limit)
    return bytes(body)


class BodyLimit:
    """ASGI middleware: every request body of the wrapped app is at most ``max_bytes``; a
    larger one gets a 413 JSON answer (``{"detail": ...}``) and is never read whole."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        if _declared_over(headers, self.max_bytes):
            await self._refuse(send)
            return
        seen = 0
        started = False

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise BodyTooLargeError(self.max_bytes)
            return message

        async def tracked(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited, tracked)
        except BodyTooLargeError:
            if started:
                raise
            await self._refuse(send)

    async def _refuse(self, send: Send) -> None:
        body = json.dumps({"detail": f"Request body over {self.max_bytes} bytes."}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
