"""The service in memory: events in through the bus, people through the REST API."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from sqlmodel import Session, col, select

from services.labeling import erasure
from services.labeling.adapters.store import TaskRow, now
from services.labeling.routing import Suggestion
from shared.datasets import iter_examples, iter_lineage, load_manifest
from shared.events import (
    DatasetVersioned,
    ErasureCompleted,
    IngestCompleted,
    IngestRequested,
)
from shared.topics import Topic
from tests.labeling.support import ADMIN, PROJECT, TICKETS, Harness, anonymized, running

pytestmark = pytest.mark.handlers


async def setup_project(h: Harness, project: dict | None = None) -> dict:
    res = await h.http.post(
        "/api/projects", content=json.dumps(project or PROJECT), headers=h.as_(ADMIN)
    )
    assert res.status_code == 200, res.text
    return res.json()


async def test_records_become_tasks_rules_auto_label_and_queue_by_uncertainty(
    data_dir: Path,
) -> None:
    async with running(data_dir) as h:
        await h.publish(anonymized("support", TICKETS[:3]))  # before the project: kept
        created = await setup_project(h)
        assert created["tasks_added"] == 3
        await h.publish(anonymized("support", TICKETS[3:]))
        await h.publish(anonymized("other", [("x1", "refund please", "billing")]))
        stats = (await h.http.get("/api/projects/tickets", headers=h.as_(ADMIN))).json()
        assert stats["tasks"] == 6
        assert stats["status"]["final"] == 1
        assert stats["provenance"] == {"rule": 1}
        labeled = await h.wait(Topic.RECORDS_LABELED)
        assert labeled.records[0].record_id == "rid-t1"
        assert labeled.project == "tickets"
        audit = await h.wait(Topic.AUDIT_RECORDED, lambda e: e.action.startswith("labeling."))
        assert audit.action == "labeling.project.create"
        assert audit.actor == "admin"


async def test_leases_answers_consensus_conflicts_and_adjudication(data_dir: Path) -> None:
    async with running(data_dir) as h:
        await setup_project(h, {**PROJECT, "rules": [], "overlap": 2})
        await h.publish(anonymized("support", TICKETS[:2]))
        ann, bob, cid = [h.as_(await h.annotator(n)) for n in ("ann", "bob", "cid")]
        a = (await h.http.get("/api/projects/tickets/next", headers=ann)).json()
        b = (await h.http.get("/api/projects/tickets/next", headers=bob)).json()
        assert a["task_id"] == b["task_id"]  # overlap 2: both may hold the first task
        again = (await h.http.get("/api/projects/tickets/next", headers=ann)).json()
        assert again["task_id"] == a["task_id"]  # a lease is kept until answered
        c = (await h.http.get("/api/projects/tickets/next", headers=cid)).json()
        assert c["task_id"] != a["task_id"]  # the first one needs no third annotator

        bad = await h.http.post(
            f"/api/projects/tickets/tasks/{a['task_id']}/answer",
            json={"label": "refunds"},
            headers=ann,
        )
        assert bad.status_code == 422
        assert bad.json()["allowed"] == ["billing", "shipping", "account"]
        url = f"/api/projects/tickets/tasks/{a['task_id']}/answer"
        first = await h.http.post(url, json={"label": "billing"}, headers=ann)
        twice = await h.http.post(url, json={"label": "shipping"}, headers=ann)
        assert first.json()["duplicate"] is False
        assert twice.json()["duplicate"] is True
        assert twice.json()["label"] == "billing"  # the double submit was applied once
        agree = await h.http.post(url, json={"label": "billing"}, headers=bob)
        assert agree.json()["status"] == "final"

        # cid holds task 2; ann takes it too, they disagree -> adjudication queue
        url2 = f"/api/projects/tickets/tasks/{c['task_id']}/answer"
        n2 = (await h.http.get("/api/projects/tickets/next", headers=ann)).json()
        assert n2["task_id"] == c["task_id"]
        await h.http.post(url2, json={"label": "shipping"}, headers=cid)
        done = await h.http.post(url2, json={"label": "account"}, headers=ann)
        assert done.json()["status"] == "conflict"
        assert (await h.http.get("/api/projects/tickets/conflicts", headers=ann)).status_code == 403
        conflicts = (
            await h.http.get("/api/projects/tickets/conflicts", headers=h.as_(ADMIN))
        ).json()
        assert [c["task_id"] for c in conflicts] == [n2["task_id"]]
        assert {v["label"] for v in conflicts[0]["votes"]} == {"shipping", "account"}
        decided = await h.http.post(
            f"/api/projects/tickets/tasks/{n2['task_id']}/adjudicate",
            json={"label": "shipping"},
            headers=h.as_(ADMIN),
        )
        assert decided.status_code == 200, decided.text
        stats = (await h.http.get("/api/projects/tickets", headers=h.as_(ADMIN))).json()
        assert stats["status"] == {"open": 0, "conflict": 0, "final": 2}
        assert stats["provenance"] == {"human": 1, "adjudicated": 1}
        assert stats["agreement"]["items"] == 2
        per = {a["annotator"]: a for a in stats["annotators"]}
        assert per["cid"]["agreement_with_final"] == 1.0
        assert per["ann"]["agreement_with_final"] == 0.5
        audit = await h.wait(Topic.AUDIT_RECORDED, lambda e: e.action == "labeling.adjudicate")
        assert audit.details["previous"] is None


async def test_a_lease_for_one_more_answer_is_exclusive_until_it_expires(data_dir: Path) -> None:
    async with running(data_dir) as h:
        await setup_project(h, {**PROJECT, "rules": [], "overlap": 1})
        await h.publish(anonymized("support", TICKETS[:1]))
        ann, bob = [h.as_(await h.annotator(n)) for n in ("ann", "bob")]
        a = await h.http.get("/api/projects/tickets/next", headers=ann)
        assert a.status_code == 200
        assert (await h.http.get("/api/projects/tickets/next", headers=bob)).status_code == 204
        late = await h.http.post(
            f"/api/projects/tickets/tasks/{a.json()['task_id']}/answer",
            json={"label": "billing"},
            headers=bob,
        )
        assert late.status_code == 409
        labeling = h.app.state.labeling
        labeling.clock = lambda: now() + timedelta(seconds=120)  # ann's lease (60 s) expired
        b = await h.http.get("/api/projects/tickets/next", headers=bob)
        assert b.status_code == 200
        assert b.json()["task_id"] == a.json()["task_id"]


async def test_skip_undo_and_auth(data_dir: Path) -> None:
    async with running(data_dir) as h:
        await setup_project(h, {**PROJECT, "rules": [], "overlap": 1})
        await h.publish(anonymized("support", TICKETS[:2]))
        assert (await h.http.get("/api/projects/tickets/next")).status_code == 401
        assert (
            await h.http.post("/api/projects", content="{}", headers=h.as_("nope"))
        ).status_code == 401
        ann = h.as_(await h.annotator("ann"))
        forbidden = await h.http.post("/api/projects", content=json.dumps(PROJECT), headers=ann)
        assert forbidden.status_code == 403
        bad = await h.http.post(
            "/api/projects", content="name: x\ntask: classification\n", headers=h.as_(ADMIN)
        )
        assert bad.status_code == 422
        assert "needs labels" in bad.text
        first = (await h.http.get("/api/projects/tickets/next", headers=ann)).json()
        await h.http.post(f"/api/projects/tickets/tasks/{first['task_id']}/skip", headers=ann)
        second = (await h.http.get("/api/projects/tickets/next", headers=ann)).json()
        assert second["task_id"] != first["task_id"]
        await h.http.post(
            f"/api/projects/tickets/tasks/{second['task_id']}/answer",
            json={"label": "shipping"},
            headers=ann,
        )
        # overlap 1: the answer made the task final, so undo is refused (adjudicators decide)
        refused = await h.http.post("/api/projects/tickets/undo", headers=ann)
        assert refused.status_code == 409
        assert "final" in refused.text
        assert (await h.http.get("/api/projects/tickets/next", headers=ann)).status_code == 204


async def test_undo_takes_back_an_answer_while_the_task_is_open(data_dir: Path) -> None:
    async with running(data_dir) as h:
        await setup_project(h, {**PROJECT, "rules": [], "overlap": 2})
        await h.publish(anonymized("support", TICKETS[:2]))
        ann = h.as_(await h.annotator("ann"))
        first = (await h.http.get("/api/projects/tickets/next", headers=ann)).json()
        await h.http.post(
            f"/api/projects/tickets/tasks/{first['task_id']}/answer",
            json={"label": "billing"},
            headers=ann,
        )
        undone = (await h.http.post("/api/projects/tickets/undo", headers=ann)).json()
        assert undone == {"task_id": first["task_id"], "undone": "billing"}
        back = (await h.http.get("/api/projects/tickets/next", headers=ann)).json()
        assert back["task_id"] == first["task_id"]
        assert back["answers"] == 0


async def test_labeled_cut_is_deterministic_stratified_and_has_lineage(data_dir: Path) -> None:
    rows = [(f"s{i}", f"ticket number {i}", ["billing", "shipping"][i % 2]) for i in range(40)]
    async with running(data_dir) as h:
        await setup_project(h, {**PROJECT, "rules": [], "overlap": 1, "cut_every": 0})
        subjects = {f"s{i}": [f"subject-{i}"] for i in range(0, 40, 2)}  # every other record
        await h.publish(anonymized("support", rows, subjects))
        ann = h.as_(await h.annotator("ann"))
        truth = {f"rid-{sid}": cat for sid, _t, cat in rows}
        while (
            res := await h.http.get("/api/projects/tickets/next", headers=ann)
        ).status_code == 200:
            task = res.json()
            await h.http.post(
                f"/api/projects/tickets/tasks/{task['task_id']}/answer",
                json={"label": truth[task["record_id"]]},
                headers=ann,
            )
        first = (await h.http.post("/api/projects/tickets/cut", headers=h.as_(ADMIN))).json()
        again = (await h.http.post("/api/projects/tickets/cut", headers=h.as_(ADMIN))).json()
        assert first["labeled"] is True
        assert first["records"] == 40
        assert again["parent"] == first["version"]  # a new cut's parent is the last one
        event = DatasetVersioned.model_validate(first)
        manifest = load_manifest(h.runtime.artifacts, event.manifest)
        examples = list(iter_examples(h.runtime.artifacts, manifest))
        assert manifest.task == "classification"
        assert manifest.splits == {
            "train": 32,
            "validation": 4,
            "test": 4,
        }
        per_split = {(e.split, e.label) for e in examples}
        assert ("test", "billing") in per_split
        assert ("test", "shipping") in per_split
        example = examples[0]
        assert example.prompt.startswith("Which team should handle this ticket?")
        assert example.completion == f" {truth[example.record_id]}"
        assert example.provenance == "human"
        for example in examples:  # the keyed subject refs travel on, for erasure lineage
            expected = {"category": truth[example.record_id]}
            if (refs := subjects.get(example.record_id.removeprefix("rid-"))) is not None:
                expected["subjects"] = refs
            assert example.meta == expected
        assert manifest.details["annotators"] == ["ann"]
        assert manifest.details["provenance"] == {"human": 40}
        lineage = list(iter_lineage(h.runtime.artifacts, manifest))
        assert lineage[0]["dataset"] == "support"
        second = load_manifest(h.runtime.artifacts, DatasetVersioned.model_validate(again).manifest)
        assert second.sha256 == manifest.sha256  # same labels -> same data, same splits
        await h.wait(Topic.DATASET_VERSIONED, lambda e: e.version == first["version"])


async def test_cut_every_n_final_labels(data_dir: Path) -> None:
    async with running(data_dir) as h:
        await setup_project(h, {**PROJECT, "rules": [], "overlap": 1, "cut_every": 3})
        await h.publish(anonymized("support", TICKETS))
        ann = h.as_(await h.annotator("ann"))
        for _ in range(3):
            task = (await h.http.get("/api/projects/tickets/next", headers=ann)).json()
            await h.http.post(
                f"/api/projects/tickets/tasks/{task['task_id']}/answer",
                json={"label": "account"},
                headers=ann,
            )
        versioned = await h.wait(Topic.DATASET_VERSIONED, lambda e: e.labeled)
        assert versioned.dataset == "tickets-labeled"
        assert versioned.records == 3


async def test_ingest_versions_are_cut_when_all_records_are_back(data_dir: Path) -> None:
    async with running(data_dir) as h:
        request = IngestRequested(dataset="support", cut_version=True)
        # the report and the records may come before the request: any order works
        await h.publish(anonymized("support", TICKETS[:3], request_id=request.event_id))
        await h.publish(
            request.caused(
                IngestCompleted, dataset="support", request_id=request.event_id, emitted=5
            )
        )
        await h.publish(request)
        assert not [e for e in h.events(Topic.DATASET_VERSIONED)]
        await h.publish(
            anonymized("support", TICKETS[3:5], request_id=request.event_id, batch_index=1)
        )
        versioned = await h.wait(
            Topic.DATASET_VERSIONED, lambda e: e.causation_id == request.event_id
        )
        assert versioned.records == 5
        assert versioned.labeled is False
        assert versioned.event_id == uuid.uuid5(request.event_id, "version")
        nxt = IngestRequested(dataset="support", cut_version=True)
        await h.publish(nxt)
        await h.publish(anonymized("support", TICKETS[5:], request_id=nxt.event_id))
        await h.publish(
            nxt.caused(IngestCompleted, dataset="support", request_id=nxt.event_id, emitted=1)
        )
        child = await h.wait(Topic.DATASET_VERSIONED, lambda e: e.causation_id == nxt.event_id)
        assert child.parent == versioned.version
        assert child.records == 6
        no_version = IngestRequested(dataset="support")
        await h.publish(no_version)
        await h.publish(
            no_version.caused(
                IngestCompleted, dataset="support", request_id=no_version.event_id, emitted=0
            )
        )
        assert not [
            e for e in h.events(Topic.DATASET_VERSIONED) if e.causation_id == no_version.event_id
        ]


async def test_erasure_removes_tasks_and_labels_and_answers(data_dir: Path) -> None:
    # The answer logic on the service's real database; the bus path (ErasureCompleted in,
    # ErasureCompleted out) is covered against the real broker in test_integration.py.
    async with running(data_dir) as h:
        await setup_project(h, {**PROJECT, "overlap": 1})
        await h.publish(anonymized("support", TICKETS))
        first = (await h.http.post("/api/projects/tickets/cut", headers=h.as_(ADMIN))).json()
        request = uuid.uuid4()
        with Session(h.runtime.engine) as session:
            other = ErasureCompleted(
                request_id=request,
                subject_ref="subj",
                service="other",
                found=True,
                records=["rid-t1"],
            )
            assert erasure.answer(session, other, "labeling") is None
            answer = erasure.answer(
                session,
                ErasureCompleted(
                    request_id=request,
                    subject_ref="subj",
                    service="anonymization",
                    found=True,
                    records=["rid-t1", "rid-t2", "rid-unknown"],
                ),
                "labeling",
            )
            session.commit()
        assert answer is not None
        assert answer.service == "labeling"
        assert answer.records == ["rid-t1", "rid-t2"]
        assert answer.found
        assert answer.dataset_versions == [first["version"]]
        assert answer.removed["tasks"] == 2
        assert answer.removed["records"] == 2
        stats = (await h.http.get("/api/projects/tickets", headers=h.as_(ADMIN))).json()
        assert stats["tasks"] == 4
        later = (await h.http.post("/api/projects/tickets/cut", headers=h.as_(ADMIN))).json()
        manifest = load_manifest(
            h.runtime.artifacts, DatasetVersioned.model_validate(later).manifest
        )
        assert "rid-t1" not in manifest.record_ids
        assert manifest.record_count == 0


async def test_import_and_export(data_dir: Path) -> None:
    async with running(data_dir) as h:
        await setup_project(h, {**PROJECT, "rules": [], "overlap": 1})
        await h.publish(anonymized("support", TICKETS))
        jsonl = "\n".join(
            json.dumps(r)
            for r in [
                {"record_id": "rid-t1", "label": "billing", "annotator": "old-tool"},
                {"source_id": "t2", "label": "shipping"},
                {"record_id": "rid-t3", "label": "nonsense"},
                {"record_id": "missing", "label": "billing"},
            ]
        )
        res = await h.http.post(
            "/api/projects/tickets/import",
            headers=h.as_(ADMIN),
            json={"format": "jsonl", "content": jsonl},
        )
        body = res.json()
        assert (body["imported"], body["rejected"], body["unmatched"]) == (2, 1, 0 + 1)
        assert "nonsense" in body["errors"][0]
        studio = [
            {
                "id": 1,
                "data": {"text": TICKETS[3][1]},
                "annotations": [
                    {
                        "completed_by": 7,
                        "result": [
                            {
                                "type": "choices",
                                "from_name": "c",
                                "to_name": "t",
                                "value": {"choices": ["shipping"]},
                            }
                        ],
                    }
                ],
            }
        ]
        res = await h.http.post(
            "/api/projects/tickets/import",
            headers=h.as_(ADMIN),
            json={"format": "labelstudio", "content": json.dumps(studio)},
        )
        assert res.json()["imported"] == 1
        out = await h.http.get("/api/projects/tickets/export?format=jsonl", headers=h.as_(ADMIN))
        rows = {r["record_id"]: r for r in map(json.loads, out.text.splitlines())}
        assert rows["rid-t4"]["label"] == "shipping"
        assert rows["rid-t4"]["answers"] == [{"annotator": "labelstudio:7", "label": "shipping"}]
        csv_out = await h.http.get("/api/projects/tickets/export?format=csv", headers=h.as_(ADMIN))
        assert csv_out.text.splitlines()[0].startswith("record_id,dataset,status,label")


async def test_model_suggestions_route_like_rules(data_dir: Path) -> None:
    async with running(data_dir) as h:
        await setup_project(h, {**PROJECT, "rules": [], "overlap": 1})
        await h.publish(anonymized("support", TICKETS[:3]))
        labeling = h.app.state.labeling
        with h.runtime.bus.unit_of_work() as uow:
            tasks = uow.session.exec(select(TaskRow).order_by(col(TaskRow.id))).all()
            sure = Suggestion("billing", 0.97, "model:tiny@v3")
            unsure = Suggestion("shipping", 0.4, "model:tiny@v3")
            assert labeling.set_suggestion(uow, tasks[0], sure) == "auto"
            assert labeling.set_suggestion(uow, tasks[1], unsure) == "human"
        stats = (await h.http.get("/api/projects/tickets", headers=h.as_(ADMIN))).json()
        assert stats["provenance"] == {"model:tiny@v3": 1}
        ann = h.as_(await h.annotator("ann"))
        first = (await h.http.get("/api/projects/tickets/next", headers=ann)).json()
        assert first["suggestion"] is None  # no suggestion (0) before the 0.4 one
        await h.http.post(f"/api/projects/tickets/tasks/{first['task_id']}/skip", headers=ann)
        second = (await h.http.get("/api/projects/tickets/next", headers=ann)).json()
        assert second["suggestion"] == {
            "label": "shipping",
            "confidence": 0.4,
            "source": "model:tiny@v3",
        }


@pytest.mark.postgres
async def test_the_workflow_on_postgres(data_dir: Path, pg_url: str) -> None:
    """Leases (row locks), JSON labels, consensus and a cut on PostgreSQL."""
    name, dataset = f"pg-{uuid.uuid4().hex[:8]}", f"support-{uuid.uuid4().hex[:8]}"
    async with running(data_dir, pg_url) as h:
        spec = {**PROJECT, "name": name, "datasets": [dataset], "rules": [], "overlap": 2}
        await setup_project(h, spec)
        await h.publish(anonymized(dataset, TICKETS[:2]))
        ann, bob, cid = [h.as_(await h.annotator(f"{n}-{name}")) for n in ("ann", "bob", "cid")]
        a = (await h.http.get(f"/api/projects/{name}/next", headers=ann)).json()
        b = (await h.http.get(f"/api/projects/{name}/next", headers=bob)).json()
        c = (await h.http.get(f"/api/projects/{name}/next", headers=cid)).json()
        assert a["task_id"] == b["task_id"] != c["task_id"]
        for who, label in ((ann, "billing"), (bob, "billing")):
            res = await h.http.post(
                f"/api/projects/{name}/tasks/{a['task_id']}/answer",
                json={"label": label},
                headers=who,
            )
            assert res.status_code == 200
        assert res.json()["status"] == "final"
        cut = (await h.http.post(f"/api/projects/{name}/cut", headers=h.as_(ADMIN))).json()
        assert cut["records"] == 1
        assert cut["dataset"] == f"{name}-labeled"


async def test_claim_checked_batches_become_tasks(data_dir: Path) -> None:
    async with running(data_dir) as h:
        await setup_project(h, {**PROJECT, "rules": []})
        event = anonymized("support", TICKETS)
        body = "".join(r.model_dump_json() + "\n" for r in event.records).encode()
        claim = h.runtime.artifacts.put_bytes(body, "application/jsonl")
        await h.publish(event.model_copy(update={"records": [], "claim": claim}))
        stats = (await h.http.get("/api/projects/tickets", headers=h.as_(ADMIN))).json()
        assert stats["tasks"] == len(TICKETS)
