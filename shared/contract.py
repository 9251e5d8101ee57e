"""The generated event contract in proto/: JSON Schemas, an AsyncAPI document, a compat lock.

    python -m shared.contract write proto   # regenerate (refuses incompatible changes)
    python -m shared.contract check proto   # exit 1 if proto/ is stale or incompatible

``compat.lock.json`` is append-only: the first schema seen for each (event type, version).
A later model of the same version may add optional fields, never remove, rename or
retype one: that needs a new schema_version and an upcaster.
"""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path
from typing import Any

from shared.events import all_models
from shared.events.envelope import Event
from shared.topics import SPECS, Topic

_IGNORED_KEYS = {"description", "title", "default", "examples"}


def event_schema(model: type[Event]) -> dict[str, Any]:
    schema = model.model_json_schema(mode="validation")
    props = schema["properties"]
    props["event_type"] = {**props["event_type"], "const": model.EVENT_TYPE}
    props["schema_version"] = {**props["schema_version"], "const": model.SCHEMA_VERSION}
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = f"llmops/{model.EVENT_TYPE}/v{model.SCHEMA_VERSION}.json"
    schema["description"] = (model.__doc__ or "").strip()
    return schema


def _inline(node: Any, defs: dict[str, Any]) -> Any:
    """Resolve $refs and drop prose, leaving the structure that compatibility is about."""
    if isinstance(node, dict):
        if "$ref" in node:
            return _inline(defs[node["$ref"].rsplit("/", 1)[-1]], defs)
        return {k: _inline(v, defs) for k, v in node.items() if k not in _IGNORED_KEYS | {"$defs"}}
    if isinstance(node, list):
        return [_inline(v, defs) for v in node]
    return node


def signature(model: type[Event]) -> dict[str, Any]:
    schema = event_schema(model)
    shape = _inline(schema, schema.get("$defs", {}))
    return {"properties": shape["properties"], "required": sorted(shape.get("required", []))}


def incompatibilities(old: Any, new: Any, path: str = "") -> list[str]:
    """Why ``new`` cannot read what ``old`` described (empty when additive)."""
    problems: list[str] = []
    if isinstance(old, dict) and "properties" in old:
        new_props = new.get("properties") if isinstance(new, dict) else None
        if new_props is None:
            return [f"{path.rstrip('.') or '<root>'}: was an object, is no longer"]
        for name, old_field in old["properties"].items():
            if name not in new_props:
                problems.append(f"{path}{name}: removed or renamed")
            else:
                problems += incompatibilities(old_field, new_props[name], f"{path}{name}.")
        added_required = set(new.get("required", [])) - set(old["properties"])
        problems += [f"{path}{name}: new required field" for name in sorted(added_required)]
        return problems
    if isinstance(old, dict) and "anyOf" in old:
        branches = new.get("anyOf", [new]) if isinstance(new, dict) else [new]
        for branch in old["anyOf"]:
            found = [incompatibilities(branch, candidate, path) for candidate in branches]
            if all(found):  # no new branch reads this old one: report the closest miss
                same_type = [
                    f
                    for f, c in zip(found, branches, strict=True)
                    if isinstance(c, dict) and c.get("type") == branch.get("type")
                ]
                closest: list[list[str]] = same_type or found
                miss: list[str] = min(closest, key=len)
                problems += miss
        return problems
    if isinstance(old, dict):
        widened = isinstance(new, dict) and "anyOf" in new and "anyOf" not in old
        if widened and any(not incompatibilities(old, b, path) for b in new["anyOf"]):
            return []
        for key in ("type", "format", "const"):
            if key in old and (not isinstance(new, dict) or new.get(key) != old[key]):
                problems.append(f"{path.rstrip('.') or '<root>'}: {key} changed")
        if "enum" in old and not set(old["enum"]) <= set(new.get("enum", old["enum"])):
            problems.append(f"{path.rstrip('.')}: enum values removed")
        for key in ("items", "additionalProperties"):
            if isinstance(old.get(key), dict):
                problems += incompatibilities(old[key], new.get(key, {}), path)
    return problems


def asyncapi() -> dict[str, Any]:
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    for topic in Topic:
        spec = SPECS[topic]
        model = spec.event
        message_name = f"{model.__name__}V{model.SCHEMA_VERSION}"
        messages[message_name] = {
            "name": model.EVENT_TYPE,
            "title": model.__name__,
            "summary": (model.__doc__ or "").strip().splitlines()[0],
            "contentType": "application/json",
            "payload": {
                "$ref": f"./schemas/{model.EVENT_TYPE}/v{model.SCHEMA_VERSION}.json",
            },
            "bindings": {"kafka": {"key": {"type": "string", "description": f"event.{spec.key}"}}},
        }
        channel_id = topic.name.lower()
        channels[channel_id] = {
            "address": topic.value,
            "description": spec.description,
            "messages": {message_name: {"$ref": f"#/components/messages/{message_name}"}},
            "bindings": {"kafka": {"partitions": spec.partitions}},
        }
        channels[f"{channel_id}_dlq"] = {
            "address": topic.dlq,
            "description": f"Dead letters of {topic.value}: original bytes and headers, "
            "plus x-llmops-dlq-reason/-error/-topic/-partition/-offset/-consumer/-attempts.",
        }
        operations[f"publish_{channel_id}"] = {
            "action": "send",
            "channel": {"$ref": f"#/channels/{channel_id}"},
        }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "llmops event contract",
            "version": "1",
            "description": "Generated from shared/events by `make proto`; do not edit.",
        },
        "defaultContentType": "application/json",
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages},
    }


def render() -> dict[str, str]:
    """Every generated file of proto/ (relative path -> text), the lock excluded."""
    files = {"asyncapi.json": _dump(asyncapi())}
    for (event_type, version), model in all_models().items():
        files[f"schemas/{event_type}/v{version}.json"] = _dump(event_schema(model))
    return files


def updated_lock(lock: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    lock = copy.deepcopy(lock)
    problems: list[str] = []
    for (event_type, version), model in all_models().items():
        key = f"{event_type}/v{version}"
        current = signature(model)
        if key in lock:
            problems += [f"{key}: {p}" for p in incompatibilities(lock[key], current)]
            if not problems:
                lock[key] = current  # additive changes join the lock
        else:
            lock[key] = current
    registered = {f"{t}/v{v}" for t, v in all_models()}
    problems += [f"{key}: schema version removed" for key in lock if key not in registered]
    return dict(sorted(lock.items())), problems


def _dump(data: Any) -> str:
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


def _read_lock(root: Path) -> dict[str, Any]:
    path = root / "compat.lock.json"
    return json.loads(path.read_text()) if path.exists() else {}


def check(root: Path) -> list[str]:
    problems = []
    lock, incompatible = updated_lock(_read_lock(root))
    problems += [
        f"incompatible change (bump schema_version + add an upcaster): {p}" for p in incompatible
    ]
    expected = {**render(), "compat.lock.json": _dump(lock)}
    for rel, text in expected.items():
        path = root / rel
        if not path.exists() or path.read_text() != text:
            problems.append(f"stale: {rel} (run `make proto`)")
    for path in root.rglob("*.json"):
        if str(path.relative_to(root)) not in expected:
            problems.append(f"stale: {path.relative_to(root)} is no longer generated")
    return problems


def write(root: Path) -> list[str]:
    lock, incompatible = updated_lock(_read_lock(root))
    if incompatible:
        return incompatible
    for rel, text in {**render(), "compat.lock.json": _dump(lock)}.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return []


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in ("write", "check"):
        print("usage: python -m shared.contract write|check DIR", file=sys.stderr)
        return 2
    root = Path(argv[1])
    problems = write(root) if argv[0] == "write" else check(root)
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
