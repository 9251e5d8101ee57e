"""(event_type, schema_version) -> model, upcasters, and the tolerant decoder."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import ValidationError

from shared.events.envelope import TOLERANT, Event

log = logging.getLogger(__name__)

E = TypeVar("E", bound=type[Event])
Upcaster = Callable[[dict[str, Any]], dict[str, Any]]

_MODELS: dict[tuple[str, int], type[Event]] = {}
_LATEST: dict[str, type[Event]] = {}
_UPCASTERS: dict[tuple[str, int], Upcaster] = {}


class EventDecodeError(ValueError):
    """A message that cannot become an event; ``reason`` is a short machine-readable kind."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def register(event_type: str, version: int = 1) -> Callable[[E], E]:
    """Class decorator: register an event model under its type and version."""

    def wrap(cls: E) -> E:
        key = (event_type, version)
        if key in _MODELS and _MODELS[key] is not cls:
            raise ValueError(f"{event_type} v{version} is registered twice")
        cls.EVENT_TYPE = event_type
        cls.SCHEMA_VERSION = version
        _MODELS[key] = cls
        if event_type not in _LATEST or version > _LATEST[event_type].SCHEMA_VERSION:
            _LATEST[event_type] = cls
        return cls

    return wrap


def upcaster(event_type: str, from_version: int) -> Callable[[Upcaster], Upcaster]:
    """Register ``fn(payload_v_n) -> payload_v_n+1`` for one event type."""

    def wrap(fn: Upcaster) -> Upcaster:
        _UPCASTERS[(event_type, from_version)] = fn
        return fn

    return wrap


def all_models() -> dict[tuple[str, int], type[Event]]:
    return dict(sorted(_MODELS.items()))


def latest(event_type: str) -> type[Event]:
    try:
        return _LATEST[event_type]
    except KeyError:
        raise EventDecodeError("unknown-event-type", f"no event type {event_type!r}") from None


def upcast(payload: dict[str, Any]) -> dict[str, Any]:
    """Bring a payload to the latest registered version of its type."""
    event_type = payload["event_type"]
    target = latest(event_type).SCHEMA_VERSION
    raw_version = payload.get("schema_version") or 1
    if isinstance(raw_version, bool) or not isinstance(raw_version, int | str):
        raise EventDecodeError("invalid", f"schema_version: not a version: {raw_version!r}")
    try:
        version = int(raw_version)
    except ValueError:
        raise EventDecodeError(
            "invalid", f"schema_version: not a version: {raw_version!r}"
        ) from None
    if version < 1:
        raise EventDecodeError("invalid", f"schema_version: must be at least 1, got {version}")
    if version > target:
        raise EventDecodeError(
            "unknown-version", f"{event_type} v{version} is newer than this reader (v{target})"
        )
    while version < target:
        step = _UPCASTERS.get((event_type, version))
        if step is None:
            raise EventDecodeError(
                "unknown-version", f"{event_type} v{version} has no upcaster to v{version + 1}"
            )
        payload = step(dict(payload))
        version += 1
        payload["schema_version"] = version
    return payload


def decode(raw: bytes | str | dict[str, Any], expected: type[Event] | None = None) -> Event:
    """Parse bytes into the latest model of their event type, as a tolerant reader.

    Unknown top-level fields are dropped and logged; anything else wrong raises
    ``EventDecodeError`` whose ``reason`` names the kind of failure.
    """
    if expected is not None and type(raw) is bytes:
        fast = _fast_decode(raw, expected)
        if fast is not None:
            return fast
    if isinstance(raw, dict):
        payload = raw
    else:
        try:
            payload = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise EventDecodeError("undecodable", f"not JSON: {exc}") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("event_type"), str):
        raise EventDecodeError("not-an-event", "expected a JSON object with an event_type")
    if expected is not None and payload["event_type"] != expected.EVENT_TYPE:
        raise EventDecodeError(
            "wrong-event-type",
            f"got {payload['event_type']!r}, this topic carries {expected.EVENT_TYPE!r}",
        )
    payload = upcast(payload)
    model = latest(payload["event_type"])
    unknown = set(payload) - set(model.model_fields)
    if unknown:
        log.warning(
            "ignoring unknown fields",
            extra={"event_type": model.EVENT_TYPE, "fields": sorted(unknown)},
        )
        payload = {k: v for k, v in payload.items() if k not in unknown}
    try:
        return model.model_validate(payload, context=TOLERANT)
    except ValidationError as exc:
        raise EventDecodeError("invalid", format_errors(exc)) from None


def _fast_decode(raw: bytes, expected: type[Event]) -> Event | None:
    """``raw`` as the latest model of ``expected``'s type in one ``model_validate_json``,
    when it is what the platform's producers write for it: that type and version at the top
    (``"event_type":"<type>","schema_version":<latest>,`` as ``Event.to_bytes`` writes them)
    and nothing the model does not know. None otherwise (older versions, unknown fields,
    anything invalid): the tolerant reader then decodes it, or says why not."""
    if _LATEST.get(expected.EVENT_TYPE) is not expected:
        return None
    marker = _MARKERS.get(expected)
    if marker is None:
        marker = _MARKERS[expected] = (
            f'"event_type":{json.dumps(expected.EVENT_TYPE)},'
            f'"schema_version":{expected.SCHEMA_VERSION},'
        ).encode()
    if marker not in raw:
        return None
    try:
        return expected.model_validate_json(raw, context=TOLERANT)
    except ValidationError:
        return None


_MARKERS: dict[type[Event], bytes] = {}


def format_errors(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}" for err in exc.errors()
    )
