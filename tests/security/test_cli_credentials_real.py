"""The CLI's HTTP calls present the user's own API key when a credential names one
(``LLMOPS_CREDENTIALS`` or ``llmops --credentials``), the admin key only without one: a
viewer's credential reads, and a command that needs admin gets the server's 403, through the
CLI's error message. Against a real gateway (its key admin and registry view) on the real
embedded broker."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
import uvicorn
from typer.testing import CliRunner, Result

from services.serving.gateway.app import build as build_gateway
from services.serving.gateway.config import GatewaySettings
from shared.cli.main import app as llmops
from tests.support.stack import free_port, until

pytestmark = pytest.mark.integration
SECRET = "cli-credentials-integration-admin-secret"


@pytest.fixture(scope="module")
def kafka(private_kafka: str) -> str:
    return private_kafka


async def test_a_viewer_credential_reads_and_gets_403_for_admin_commands(
    kafka: str, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in {
        "LLMOPS_ADMIN_KEY": SECRET,  # there, and not used while a credential is given
        "LLMOPS_KAFKA_BOOTSTRAP": kafka,
        "LLMOPS_DATA_DIR": str(data_dir),
        "LLMOPS_CONFIG_DIR": str(data_dir.parent / "config"),
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("LLMOPS_CREDENTIALS", raising=False)  # restored after `--credentials`
    _runtime, gateway = build_gateway(
        GatewaySettings(
            kafka_bootstrap=kafka, data_dir=data_dir, admin_key=SECRET, require_authority=False
        )
    )
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = uvicorn.Server(
        uvicorn.Config(gateway, host="127.0.0.1", port=port, log_level="warning")
    )
    serving = asyncio.create_task(server.serve())

    async def cli(*args: str, credentials: Path | None = None) -> Result:
        env = {"LLMOPS_CREDENTIALS": str(credentials)} if credentials else {}
        return await asyncio.to_thread(CliRunner().invoke, llmops, list(args), env=env)

    try:
        await until(lambda: server.started, timeout=60)
        await until(gateway.state.key_registry.loaded, timeout=60)
        made = await cli("keys", "create", "vera", "--role", "viewer", "--url", url)
        assert made.exit_code == 0, made.output
        vera = json.loads(made.stdout.strip().splitlines()[-1])
        credential = Path(vera["credentials"])

        # a read a viewer may make: the gateway's models, with vera's key
        async def reads() -> bool:
            result = await cli("models", "live", "--gateway", url, credentials=credential)
            return result.exit_code == 0

        for _ in range(100):  # the gateway's view applies the new key in a moment
            if await reads():
                break
            await asyncio.sleep(0.2)
        assert await reads()

        # managing keys needs admin: the gateway's 403, as the CLI prints it
        listed = await cli("keys", "list", "--url", url, credentials=credential)
        assert listed.exit_code == 2, listed.output
        assert "403" in listed.output, listed.output
        assert "viewer" in listed.output, listed.output
        # the same through the global option
        revoked = await cli(
            "--credentials", str(credential), "keys", "revoke", vera["key_id"], "--url", url
        )
        assert revoked.exit_code == 2, revoked.output
        assert "403" in revoked.output, revoked.output

        # without a credential: the admin key, which may
        as_admin = await cli("keys", "list", "--url", url)
        assert as_admin.exit_code == 0, as_admin.output
        gone = await cli("keys", "revoke", vera["key_id"], "--url", url)
        assert gone.exit_code == 0, gone.output
        # vera's key is refused once revoked: her reads did present her key
        for _ in range(100):
            if not await reads():
                break
            await asyncio.sleep(0.2)
        assert not await reads()
        # a refused key is named as such, not as a gateway that cannot be reached
        refused = await cli("models", "live", "--gateway", url, credentials=credential)
        assert refused.exit_code == 2, refused.output
        assert "401" in refused.output, refused.output
        assert "cannot reach" not in refused.output, refused.output
    finally:
        server.should_exit = True
        await serving
