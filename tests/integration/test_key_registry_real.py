"""The key registry's view against the real embedded broker: a service reads the compacted
topic from the beginning at each start (no consumer group), says when it has read it all,
and applies a revocation published while it runs."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from typer.testing import CliRunner

from services.serving.cli import keys_app
from services.serving.gateway.app import build as build_gateway
from services.serving.gateway.config import GatewaySettings
from shared.authority import provision, service_principal
from shared.bus import make_broker
from shared.events import ApiKeyChanged
from shared.keys import ROOT_NAME, KeyRegistry, changed, new_secret
from shared.settings import ServiceSettings
from shared.topics import Topic
from tests.support.stack import free_port, until

pytestmark = pytest.mark.integration


async def _publish(settings: ServiceSettings, *records: ApiKeyChanged) -> None:
    broker = make_broker(settings, client_id="test-key-issuer")
    await broker.start()
    try:
        for record in records:
            await broker.publish(
                record.to_bytes(), Topic.API_KEYS.value, key=record.key_id.encode()
            )
    finally:
        await broker.stop()


async def _started_view(settings: ServiceSettings, name: str) -> tuple[KeyRegistry, object]:
    registry = KeyRegistry(settings)
    broker = make_broker(settings, client_id=name)
    registry.attach(broker)
    assert not registry.loaded()  # not read yet: issued keys are refused meanwhile
    await broker.start()
    await until(registry.loaded, timeout=30)
    return registry, broker


async def test_a_view_replays_the_registry_at_each_start_and_follows_revocations(
    kafka: str,
) -> None:
    settings = ServiceSettings(kafka_bootstrap=kafka, require_authority=False)
    kept, revoked_later = new_secret(), new_secret()
    await _publish(
        settings,
        changed(kept, "kept", "operator", 1, 1),
        changed(revoked_later, "later", "annotator", 1, 1),
    )
    first, broker = await _started_view(settings, "test-key-view-1")
    try:
        assert first.fresh()
        assert first.resolve(kept) is not None
        assert first.resolve(revoked_later) is not None
        await _publish(settings, changed(revoked_later, "later", "annotator", 1, 1, revoked=True))
        await until(lambda: first.resolve(revoked_later) is None, timeout=30)
    finally:
        await broker.stop()  # type: ignore[attr-defined]

    restarted, broker = await _started_view(settings, "test-key-view-2")
    try:
        principal = restarted.resolve(kept)
        assert principal is not None
        assert principal.role == "operator"
        assert restarted.resolve(revoked_later) is None
    finally:
        await broker.stop()  # type: ignore[attr-defined]


async def test_a_key_the_gateway_issues_and_revokes_reaches_another_service(
    kafka: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The whole path over the real broker: `llmops keys create|list|revoke` -> the gateway's
    key admin API -> the registry topic -> another service's view."""
    root = "root-key-of-this-test"
    monkeypatch.setenv("LLMOPS_ADMIN_KEY", root)  # the CLI calls the gateway with it
    # as `llmops up` runs it: signed records, checked by the other service
    signing = provision(root, tmp_path, {"serving": {ApiKeyChanged.EVENT_TYPE}})
    gateway_settings = GatewaySettings(
        kafka_bootstrap=kafka,
        data_dir=tmp_path,
        admin_key=root,
        require_authority=True,
        authority_principal=service_principal("serving"),
        authority_key=signing["serving"],
    )
    _runtime, app = build_gateway(gateway_settings)
    other, broker = await _started_view(
        ServiceSettings(
            kafka_bootstrap=kafka, data_dir=tmp_path, admin_key=root, require_authority=True
        ),
        "test-key-view-other",
    )
    assert other.verifier is not None
    unsigned_before = other.rejected  # earlier tests' unsigned records on the shared broker
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    serving = asyncio.create_task(server.serve())

    async def keys(*args: str) -> list[dict[str, Any]]:
        result = await asyncio.to_thread(CliRunner().invoke, keys_app, [*args, "--url", url])
        assert result.exit_code == 0, result.output
        return [json.loads(line) for line in result.stdout.splitlines()]

    try:
        await until(lambda: server.started, timeout=30)
        await until(app.state.key_registry.loaded, timeout=30)
        [made] = await keys("create", "ann", "--role", "annotator")
        secret, key_id = made["key"], made["key_id"]
        await until(lambda: other.resolve(secret) is not None, timeout=30)
        principal = other.resolve(secret)
        assert principal is not None
        assert (principal.name, principal.role) == ("ann", "annotator")
        listed = await keys("list")
        assert {k["name"] for k in listed} >= {ROOT_NAME, "ann"}
        assert all("key" not in k for k in listed)  # ids, never secrets
        await keys("revoke", key_id)
        await until(lambda: other.resolve(secret) is None, timeout=30)
        assert other.rejected == unsigned_before  # the gateway's records: signed and allowed
        async with httpx.AsyncClient(base_url=url) as http:
            refused = await http.get("/v1/models", headers={"authorization": f"Bearer {secret}"})
        assert refused.status_code == 401
    finally:
        server.should_exit = True
        await asyncio.wait_for(serving, timeout=30)
        await broker.stop()  # type: ignore[attr-defined]


async def test_an_empty_registry_counts_as_read(private_kafka: str) -> None:
    """A fresh install: nothing issued yet, the view is loaded (healthz green) at once and
    only the root key works."""
    settings = ServiceSettings(
        kafka_bootstrap=private_kafka, admin_key="fresh-root", require_authority=False
    )
    registry, broker = await _started_view(settings, "test-key-view-empty")
    try:
        assert registry.view.entries() == []
        root = registry.resolve("fresh-root")
        assert root is not None
        assert root.root
        assert registry.resolve(new_secret()) is None
    finally:
        await broker.stop()  # type: ignore[attr-defined]
