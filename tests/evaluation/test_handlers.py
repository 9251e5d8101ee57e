"""The registry flow on FastStream's in-memory broker: real tables, fake generation."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from faststream.kafka import TestKafkaBroker
from sqlmodel import Session, select

from services.evaluation.app import build
from services.evaluation.config import EvaluationSettings, GateConfig
from services.evaluation.judge import JudgeConfig
from shared.bus.store import OutboxEntry
from shared.events import ModelTrained, WorkerHeartbeat, decode
from shared.events.serving import ServedModel
from shared.topics import Topic
from tests.evaluation import fakes

pytestmark = pytest.mark.handlers
ADMIN = "sk-test-admin"


class Harness:
    def __init__(
        self,
        tmp: Path,
        gates: GateConfig,
        behaviours: dict[str, fakes.Behaviour],
        judge_port: Any = None,
        **settings: Any,
    ):
        self.tmp = tmp
        boot, _ = fakes.model_dir(tmp, "boot")
        self.settings = EvaluationSettings(
            data_dir=tmp / "data",
            admin_key=ADMIN,
            gates=gates,
            bootstrap_model="m",
            bootstrap_path=Path(boot),
            bootstrap_samples=200,
            **settings,
        )
        self.generator = fakes.FakeGenerator(
            {
                boot: behaviours.pop("bootstrap"),
                **{fakes.model_dir(tmp, v)[0]: b for v, b in behaviours.items()},
            }
        )
        self.runtime, self.app = build(self.settings, generator=self.generator, judge=judge_port)
        self.runner = self.runtime.state["runner"]

    async def publish(self, broker: Any, event: Any) -> None:
        await broker.publish(event.to_bytes(), Topic.for_event(event).value)

    async def trained(self, broker: Any, version: str, dataset_version: str) -> None:
        _, artifact = fakes.model_dir(self.tmp, version)
        await self.publish(
            broker,
            ModelTrained(
                run_id=uuid.uuid4(),
                model_name="m",
                model_version=version,
                artifact=artifact,
                dataset="tickets",
                dataset_version=dataset_version,
                metrics={"loss": 1.0},
            ),
        )

    def emitted(self, topic: Topic) -> list[Any]:
        with Session(self.runtime.engine) as session:
            rows = session.exec(select(OutboxEntry).where(OutboxEntry.topic == topic.value))
            return [decode(r.value) for r in rows]

    def http(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app), base_url="http://registry"
        )


async def _setup(h: Harness, broker: Any) -> str:
    version = fakes.dataset_version(h.runtime.artifacts)
    await h.publish(broker, version)
    await h.publish(
        broker, WorkerHeartbeat(worker_id="w1", models=[ServedModel(name="m", version="bootstrap")])
    )
    return version.version


async def test_better_promoted_then_worse_blocked_then_rollback(tmp_path: Path) -> None:
    h = Harness(
        tmp_path,
        GateConfig(min_accuracy=0.5),
        {"bootstrap": fakes.right_but_few, "v2": fakes.right, "v3": fakes.wrong},
    )
    async with TestKafkaBroker(h.runtime.broker) as broker:
        dataset_version = await _setup(h, broker)
        await h.trained(broker, "v2", dataset_version)
        evaluated = h.runner.run_one("m", "v2")
        assert evaluated.passed
        assert evaluated.outcome == "promoted"
        assert evaluated.compared_with == "bootstrap"
        assert evaluated.scores["accuracy"] == 1.0
        promoted = h.emitted(Topic.MODEL_PROMOTED)
        assert [(p.model_version, p.previous_version, p.actor) for p in promoted] == [
            ("v2", "bootstrap", "evaluation-gates")
        ]
        assert promoted[0].artifact is not None

        await h.trained(broker, "v3", dataset_version)
        blocked = h.runner.run_one("m", "v3")
        assert not blocked.passed
        assert blocked.outcome == "blocked"
        assert not blocked.gates["no_regression"]
        assert "significant regression" in blocked.reasons["no_regression"]
        assert blocked.compared_with == "v2"
        assert len(h.emitted(Topic.MODEL_PROMOTED)) == 1

        async with h.http() as http:
            assert (await http.get("/v1/registry/models")).status_code == 401  # reads: a key
            view = {"Authorization": f"Bearer {ADMIN}"}
            listed = (await http.get("/v1/registry/models", headers=view)).json()["data"]
            assert listed == [
                {"name": "m", "aliases": {"champion": "v2", "staging": "v3"}, "versions": 3}
            ]
            page = await http.get("/v1/registry/models/m/versions/v3/report.html", headers=view)
            assert page.status_code == 200
            assert "no_regression" in page.text
            assert "/v1/registry/static/plotly.min.js" in page.text
            assert page.text.count("Plotly.newPlot") == 3  # slices, confusion, vs champion
            assert (await http.get("/v1/registry/static/plotly.min.js")).status_code == 200
            card = (await http.get("/v1/registry/models/m/versions/v2/card.md", headers=view)).text
            assert "## Fairness" in card
            assert "| region | eu |" in card
            report = (
                await http.get("/v1/registry/models/m/versions/v2/report", headers=view)
            ).json()
            assert report["result"]["intervals"]["accuracy"]["low"] <= 1.0

            http.cookies.set("llmops_key", ADMIN)  # a read's cookie is no key for a change
            denied = await http.post("/v1/registry/models/m/rollback", json={})
            assert denied.status_code == 401
            http.cookies.clear()
            auth = {"Authorization": f"Bearer {ADMIN}"}
            back = await http.post(
                "/v1/registry/models/m/rollback", json={"reason": "test"}, headers=auth
            )
            assert back.status_code == 200, back.text
            assert (back.json()["from_version"], back.json()["to_version"]) == ("v2", "bootstrap")
            again = await http.post("/v1/registry/models/m/rollback", json={}, headers=auth)
            assert again.status_code == 409
            assert "no previous champion" in again.json()["error"]["message"]
            missing = await http.post(
                "/v1/registry/models/m/promote", json={"version": "v9"}, headers=auth
            )
            assert missing.status_code == 404
            assert "v9" in missing.json()["error"]["message"]
            shown = (await http.get("/v1/registry/models/m", headers=view)).json()
            assert shown["aliases"]["champion"]["version"] == "bootstrap"
            actions = [(e["alias"], e["action"], e["version"]) for e in shown["history"]]
            assert ("champion", "rollback", "bootstrap") in actions
        audits = h.emitted(Topic.AUDIT_RECORDED)
        assert [(a.action, a.allowed) for a in audits] == [
            ("promote", True),
            ("rollback", False),  # the attempt without a key
            ("rollback", True),
        ]


async def test_a_planted_slice_gap_is_blocked_with_the_slice_named(tmp_path: Path) -> None:
    h = Harness(
        tmp_path,
        GateConfig(max_fairness_gap=0.2),
        {"bootstrap": fakes.wrong, "v2": fakes.right_in_eu_only},
    )
    async with TestKafkaBroker(h.runtime.broker) as broker:
        dataset_version = await _setup(h, broker)
        await h.trained(broker, "v2", dataset_version)
        event = h.runner.run_one("m", "v2")
        assert not event.passed
        assert not event.gates["max_fairness_gap"]
        assert event.gates["no_regression"]  # it is better than the champion overall
        assert "region=us vs region=eu" in event.reasons["max_fairness_gap"]
        assert h.emitted(Topic.MODEL_PROMOTED) == []


async def test_approval_holds_the_promotion_until_approved(tmp_path: Path) -> None:
    h = Harness(
        tmp_path, GateConfig(require_approval=True), {"bootstrap": fakes.wrong, "v2": fakes.right}
    )
    async with TestKafkaBroker(h.runtime.broker) as broker:
        dataset_version = await _setup(h, broker)
        await h.trained(broker, "v2", dataset_version)
        event = h.runner.run_one("m", "v2")
        assert event.passed
        assert event.outcome == "awaiting-approval"
        assert h.emitted(Topic.MODEL_PROMOTED) == []
        auth = {"Authorization": f"Bearer {ADMIN}"}
        async with h.http() as http:
            wrong_key = await http.post(
                "/v1/registry/models/m/versions/v2/approve",
                headers={"Authorization": "Bearer nope"},
            )
            assert wrong_key.status_code == 401  # not a key of the registry
            ok = await http.post("/v1/registry/models/m/versions/v2/approve", headers=auth)
            assert ok.status_code == 200, ok.text
            twice = await http.post("/v1/registry/models/m/versions/v2/approve", headers=auth)
            assert twice.status_code == 409
        promoted = h.emitted(Topic.MODEL_PROMOTED)
        assert [(p.model_version, p.previous_version) for p in promoted] == [("v2", "bootstrap")]
        assert promoted[0].actor.startswith("key:")
        audits = h.emitted(Topic.AUDIT_RECORDED)
        assert [(a.action, a.target, a.allowed) for a in audits] == [
            ("approve", "model:m@v2", False),
            ("approve", "model:m@v2", True),
        ]


async def test_redelivered_training_event_is_registered_once(tmp_path: Path) -> None:
    h = Harness(tmp_path, GateConfig(), {"bootstrap": fakes.wrong, "v2": fakes.right})
    async with TestKafkaBroker(h.runtime.broker) as broker:
        dataset_version = await _setup(h, broker)
        _, artifact = fakes.model_dir(tmp_path, "v2")
        event = ModelTrained(
            run_id=uuid.uuid4(),
            model_name="m",
            model_version="v2",
            artifact=artifact,
            dataset="tickets",
            dataset_version=dataset_version,
        )
        await h.publish(broker, event)
        await h.publish(broker, event)
        assert h.runner.run_one("m", "v2") is not None
        assert h.runner.run_one("m", "v2") is None  # no longer queued
        assert len(h.emitted(Topic.MODEL_EVALUATED)) == 1
        body = json.loads(h.emitted(Topic.MODEL_EVALUATED)[0].model_dump_json())
        assert body["report_url"].endswith("/v1/registry/models/m/versions/v2/report.html")


async def test_register_by_hand_then_promote_as_canary_and_champion(tmp_path: Path) -> None:
    h = Harness(tmp_path, GateConfig(), {"bootstrap": fakes.wrong, "v5": fakes.right})
    _, artifact = fakes.model_dir(tmp_path, "v5")
    auth = {"Authorization": f"Bearer {ADMIN}"}
    async with TestKafkaBroker(h.runtime.broker) as broker:
        await _setup(h, broker)
        async with h.http() as http:
            body = {"version": "v5", "artifact": json.loads(artifact.model_dump_json())}
            made = await http.post("/v1/registry/models/m/versions", json=body, headers=auth)
            assert made.status_code == 200, made.text
            assert made.json()["status"] == "registered"
            again = await http.post("/v1/registry/models/m/versions", json=body, headers=auth)
            assert again.status_code == 409
            bad = await http.post(
                "/v1/registry/models/m/versions", json={"version": "v6"}, headers=auth
            )
            assert bad.status_code == 422
            assert "artifact" in bad.text
            canary = await http.post(
                "/v1/registry/models/m/promote", json={"version": "v5", "canary": 0.1}, headers=auth
            )
            assert canary.status_code == 200, canary.text
            full = await http.post(
                "/v1/registry/models/m/promote", json={"version": "v5"}, headers=auth
            )
            assert full.status_code == 200, full.text
            aliases = (await http.get("/v1/registry/models/m", headers=auth)).json()["aliases"]
        assert aliases["champion"]["version"] == "v5"
        assert "challenger" not in aliases
        promoted = h.emitted(Topic.MODEL_PROMOTED)
        assert [(p.alias, p.traffic_share) for p in promoted] == [
            ("challenger", 0.1),
            ("champion", 1.0),
        ]
        assert [a.action for a in h.emitted(Topic.AUDIT_RECORDED)] == [
            "register",
            "promote",
            "promote",
        ]


async def test_a_version_whose_dataset_never_came_fails_with_the_reason(tmp_path: Path) -> None:
    h = Harness(
        tmp_path, GateConfig(), {"bootstrap": fakes.wrong, "v2": fakes.right}, dataset_wait_s=0
    )
    async with TestKafkaBroker(h.runtime.broker) as broker:
        await h.trained(broker, "v2", "never-announced")
        await h.runner.start()
        try:
            wait = 0
            while not h.emitted(Topic.MODEL_EVALUATED) and wait < 200:
                await asyncio.sleep(0.05)
                wait += 1
        finally:
            await h.runner.stop()
    [event] = h.emitted(Topic.MODEL_EVALUATED)
    assert not event.passed
    assert event.outcome == "blocked"
    assert "tickets@never-announced was never announced" in event.reasons["evaluated"]
    assert h.emitted(Topic.MODEL_PROMOTED) == []


async def test_a_canary_first_then_widened_by_hand(tmp_path: Path) -> None:
    h = Harness(
        tmp_path, GateConfig(canary_share=0.2), {"bootstrap": fakes.wrong, "v2": fakes.right}
    )
    async with TestKafkaBroker(h.runtime.broker) as broker:
        dataset_version = await _setup(h, broker)
        await h.trained(broker, "v2", dataset_version)
        event = h.runner.run_one("m", "v2")
        assert event.outcome == "canary"
        async with h.http() as http:
            widened = await http.post(
                "/v1/registry/models/m/promote",
                json={"version": "v2"},
                headers={"Authorization": f"Bearer {ADMIN}"},
            )
            assert widened.status_code == 200, widened.text
    promoted = h.emitted(Topic.MODEL_PROMOTED)
    assert [(p.alias, p.traffic_share) for p in promoted] == [
        ("challenger", 0.2),
        ("champion", 1.0),
    ]


@pytest.mark.parametrize("sensible", [True, False])
async def test_a_judge_gates_only_when_it_agrees_with_humans(
    tmp_path: Path, sensible: bool
) -> None:
    h = Harness(
        tmp_path,
        GateConfig(),
        {"bootstrap": fakes.wrong, "v2": fakes.right_but_few},
        judge_port=fakes.FakeJudge(sensible),
        judge=JudgeConfig(model="judge", min_score=4.5, min_kappa=0.5),
    )
    async with TestKafkaBroker(h.runtime.broker) as broker:
        version = fakes.dataset_version(h.runtime.artifacts, rows=fakes.ROWS + fakes.rating_rows())
        await h.publish(broker, version)
        await h.trained(broker, "v2", version.version)
        event = h.runner.run_one("m", "v2")
    assert event.scores["accuracy"] < 0.5  # the rated rows are calibration, not test examples
    if sensible:  # agrees with the humans: its low rating of v2 blocks it
        assert not event.gates["judge_score"]
        assert "kappa 1.00" in event.reasons["judge_score"]
        assert event.scores["judge_score"] < 4.5
    else:  # rates everything 3: no agreement, so no say
        assert event.gates["judge_score"]
        assert "not used" in event.reasons["judge_score"]
        assert "judge_score" not in event.scores
