"""Kafka ACLs derived from the plug-ins: each service may touch exactly its declared topics.

A service principal (its plug-in name) gets, for every topic it

* consumes: Read + Describe on the topic, Write + Describe on its ``.dlq`` twin (the bus
  dead-letters there), Read on the consumer groups prefixed with its name;
* produces: Write + Describe;
* owns by prefix (``ServicePlugin.topic_prefixes``, e.g. per-instance reply topics): every
  operation it needs to create, use and delete them.

Every principal may Describe the ``llmops.`` topics (metadata only): idempotent topic checks
at start list what exists instead of trying to create what they cannot see.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from shared.plugins import ServicePlugin

CATALOGUE_PREFIX = "llmops."
PREFIX_OPERATIONS = ("Create", "Delete", "Describe", "Read", "Write")


@dataclass(frozen=True, order=True)
class Grant:
    """One ALLOW ACL: ``principal`` may ``operation`` on a topic or group resource."""

    principal: str
    resource: str  # "topic" or "group"
    pattern: str  # "literal" or "prefixed"
    name: str
    operation: str


def service_grants(plugin: ServicePlugin) -> set[Grant]:
    who = plugin.name
    grants: set[Grant] = set()

    def topic(name: str, *operations: str, pattern: str = "literal") -> None:
        grants.update(Grant(who, "topic", pattern, name, op) for op in operations)

    for consumed in plugin.consumes:
        topic(consumed.value, "Read", "Describe")
        topic(consumed.dlq, "Write", "Describe")
    for produced in plugin.produces:
        topic(produced.value, "Write", "Describe")
    for prefix in plugin.topic_prefixes:
        topic(prefix, *PREFIX_OPERATIONS, pattern="prefixed")
    topic(CATALOGUE_PREFIX, "Describe", pattern="prefixed")
    if plugin.consumes or plugin.topic_prefixes:
        grants.update(Grant(who, "group", "prefixed", who, op) for op in ("Read", "Describe"))
    return grants


def all_grants(plugins: Iterable[ServicePlugin]) -> list[Grant]:
    return sorted(g for plugin in plugins for g in service_grants(plugin))


def allowed(grants: Iterable[Grant], principal: str, operation: str, topic: str) -> bool:
    """Would the broker let ``principal`` do ``operation`` on ``topic`` (ALLOW-only model)?"""
    for g in grants:
        if g.principal != principal or g.resource != "topic" or g.operation != operation:
            continue
        if g.name == topic if g.pattern == "literal" else topic.startswith(g.name):
            return True
    return False
