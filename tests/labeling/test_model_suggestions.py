"""Model suggestions through Kafka inference, in memory: the service's real asking loop and
reply handler, a small fake worker on the in-memory broker that answers like the serving
worker does (an ``InferenceCompleted`` with per-token logprobs on the request's reply topic)."""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from faststream.kafka.annotations import KafkaMessage
from sqlmodel import Session, col, select

from services.labeling.adapters.store import ModelAskRow, TaskRow, now
from shared.events import decode
from shared.events.serving import (
    GeneratedChoice,
    InferenceChunk,
    InferenceCompleted,
    InferenceRequested,
)
from shared.topics import Topic
from shared.wire import encode_chunks
from tests.labeling.support import ADMIN, PROJECT, TICKETS, Harness, anonymized, running

pytestmark = pytest.mark.handlers

REPLIES = "llmops.inference.replies.labeling"
SUGGESTING = {
    **PROJECT,
    "overlap": 1,
    "model_suggestions": {"enabled": True, "model": "tiny", "max_in_flight": 8},
}
# what the fake model answers per ticket: label and probability of its tokens (None: no logprobs)
ANSWERS: dict[str, tuple[str, float | None]] = {
    "t1": ("billing", 0.99),
    "t2": ("shipping", 0.97),
    "t3": ("account", 0.5),
    "t4": ("shipping", 0.3),
    "t5": ("billing", None),
    "t6": ("account", 0.92),
}


class FakeWorker:
    """Reads inference requests off the in-memory broker; answers at once, or when told.
    Pass it as ``running(..., setup=worker)``: it subscribes before the broker starts."""

    def __init__(self, *, answer: bool = True, version: str = "v7") -> None:
        self.answer = answer
        self.version = version
        self.requests: list[InferenceRequested] = []

    def __call__(self, h: Harness) -> None:
        self.h = h

        async def on_request(message: KafkaMessage) -> None:
            event = decode(message.body, expected=InferenceRequested)
            assert isinstance(event, InferenceRequested)
            self.requests.append(event)
            if self.answer:
                await self.reply(event)

        h.runtime.broker.subscriber(Topic.INFERENCE_REQUESTED.value, group_id="fake-worker")(
            on_request
        )

    def reply_for(self, request: InferenceRequested, **changes: Any) -> InferenceCompleted:
        ticket = next(sid for sid, text, _ in TICKETS if text in request.prompt)
        label, p = ANSWERS[ticket]
        logprobs = (
            None
            if p is None
            else [
                {"token": label[:3], "logprob": math.log(p), "top": []},
                {"token": label[3:], "logprob": 0.0, "top": []},
                {"token": "", "logprob": -6.0, "top": []},  # end of sequence: not the label's
            ]
        )
        fields: dict[str, Any] = {
            "request_id": request.request_id,
            "model": request.model,
            "model_version": self.version,
            "text": label,
            "finish_reason": "stop",
            "choices": [GeneratedChoice(index=0, text=label, logprobs=logprobs)],
        }
        return request.caused(InferenceCompleted, **{**fields, **changes})

    async def reply(self, request: InferenceRequested, **changes: Any) -> None:
        broker = self.h.runtime.broker
        # a streamed-chunks frame on the same topic first: labeling must skip it
        chunk = InferenceChunk(request_id=request.request_id, seq=0, delta="x", tokens=1)
        await broker.publish(encode_chunks([chunk]), request.reply_to)
        await broker.publish(self.reply_for(request, **changes).to_bytes(), request.reply_to)


async def eventually(check: Callable[[], Any], timeout: float = 20) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while not (result := check()):
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError("condition not met")
        await asyncio.sleep(0.02)
    return result


def asks(h: Harness) -> list[ModelAskRow]:
    with Session(h.runtime.engine) as session:
        return list(session.exec(select(ModelAskRow).order_by(col(ModelAskRow.task_id))).all())


def tasks(h: Harness) -> dict[str, TaskRow]:
    with Session(h.runtime.engine) as session:
        return {t.record_id.removeprefix("rid-"): t for t in session.exec(select(TaskRow)).all()}


async def create(h: Harness, spec: dict[str, Any]) -> None:
    res = await h.http.post("/api/projects", content=json.dumps(spec), headers=h.as_(ADMIN))
    assert res.status_code == 200, res.text


async def test_the_model_is_asked_and_routes_by_confidence(data_dir: Path) -> None:
    worker = FakeWorker()
    async with running(data_dir, setup=worker) as h:
        await create(h, SUGGESTING)
        await h.publish(anonymized("support", TICKETS))
        await eventually(lambda: len(asks(h)) == 5 and all(a.state == "answered" for a in asks(h)))

        # t1 was auto-labeled by its rule: the model is asked only about the open tasks
        asked = {next(s for s, t, _ in TICKETS if t in r.prompt) for r in worker.requests}
        assert asked == {"t2", "t3", "t4", "t5", "t6"}
        request = worker.requests[0]
        assert request.model == "tiny"
        assert request.reply_to == REPLIES
        assert request.sampling == {
            "max_tokens": 32,
            "temperature": 0.0,
            "logprobs": 0,
            "structured": {"choice": ["billing", "shipping", "account"]},
        }
        assert request.prompt.startswith("Which team should handle this ticket?\n")
        assert request.producer == "labeling"

        by_ticket = tasks(h)
        assert by_ticket["t2"].status == "final"  # 0.97 >= 0.9: an auto label
        assert by_ticket["t2"].provenance == "model:tiny@v7"
        assert by_ticket["t6"].status == "final"
        assert by_ticket["t3"].status == "open"
        assert (by_ticket["t3"].suggestion, by_ticket["t3"].confidence) == ("account", 0.5)
        assert by_ticket["t3"].suggestion_source == "model:tiny@v7"
        assert by_ticket["t5"].confidence == 0.0  # no logprobs: a hint, never an auto label
        outcomes = {a.task_id: (a.outcome, a.model_version) for a in asks(h)}
        assert sorted(o for o, _ in outcomes.values()) == ["auto"] * 2 + ["human"] * 3
        assert {v for _, v in outcomes.values()} == {"v7"}

        labeled = await h.wait(Topic.RECORDS_LABELED, lambda e: e.records[0].record_id == "rid-t2")
        assert labeled.records[0].label == "shipping"
        stats = (await h.http.get("/api/projects/tickets", headers=h.as_(ADMIN))).json()
        assert stats["provenance"] == {"rule": 1, "model:tiny@v7": 2}

        # people get the rest, the least confident first: t5 (0), t4 (0.3), t3 (0.5)
        ann = h.as_(await h.annotator("ann"))
        order = []
        for _ in range(3):
            task = (await h.http.get("/api/projects/tickets/next", headers=ann)).json()
            order.append((task["suggestion"]["label"], task["suggestion"]["confidence"]))
            await h.http.post(f"/api/projects/tickets/tasks/{task['task_id']}/skip", headers=ann)
        assert order == [("billing", 0.0), ("shipping", 0.3), ("account", 0.5)]


async def test_questions_in_flight_are_bounded_and_time_out_to_people(data_dir: Path) -> None:
    worker = FakeWorker(answer=False)
    async with running(data_dir, setup=worker) as h:
        spec = {**SUGGESTING, "rules": []}
        spec["model_suggestions"] = {**SUGGESTING["model_suggestions"], "max_in_flight": 2}
        await create(h, spec)
        await h.publish(anonymized("support", TICKETS))
        suggester = h.app.state.suggester
        await eventually(lambda: len(worker.requests) == 2)
        for _ in range(3):
            await suggester.step()
        assert len(worker.requests) == 2  # two unanswered: nothing more is asked

        late = worker.requests[0]
        suggester.clock = lambda: now() + timedelta(seconds=61)  # past timeout_s (60)
        await suggester.step()
        states = [a.state for a in asks(h)]
        assert sorted(states) == ["expired", "expired", "pending", "pending"]
        assert len(worker.requests) == 4  # two slots free again: the next two tasks

        await worker.reply(late)  # after its timeout: ignored, the task stays with people
        first = tasks(h)["t1"]
        assert (first.status, first.suggestion) == ("open", None)
        assert asks(h)[0].outcome == "timeout"
        ann = h.as_(await h.annotator("ann"))
        task = (await h.http.get("/api/projects/tickets/next", headers=ann)).json()
        assert task["record_id"] == "rid-t1"


async def test_a_restart_asks_again_and_applies_an_answer_once(data_dir: Path) -> None:
    spec = {**SUGGESTING, "rules": []}
    spec["model_suggestions"] = {**SUGGESTING["model_suggestions"], "max_in_flight": 1}
    worker = FakeWorker(answer=False)
    async with running(data_dir, setup=worker) as h:
        await create(h, spec)
        await h.publish(anonymized("support", TICKETS[1:2]))  # t2: the model is sure
        await eventually(lambda: worker.requests)
        before = worker.requests[0]
    # the process died with the question unanswered; its reply would be lost with it
    worker = FakeWorker(answer=False)
    async with running(data_dir, setup=worker) as h:
        await eventually(lambda: worker.requests)
        again = worker.requests[0]
        assert again.request_id != before.request_id
        assert again.prompt == before.prompt
        await worker.reply(before)  # the old question's reply: not applied
        assert tasks(h)["t2"].status == "open"
        await worker.reply(again)
        await worker.reply(again)  # redelivered
        assert tasks(h)["t2"].provenance == "model:tiny@v7"
        await h.settled()
        labeled = [e for e in h.events(Topic.RECORDS_LABELED) if e.project == "tickets"]
        assert len(labeled) == 1
        assert [a.state for a in asks(h)] == ["answered"]
        assert len(worker.requests) == 1


async def test_errors_and_answers_outside_the_labels_leave_the_task_to_people(
    data_dir: Path,
) -> None:
    worker = FakeWorker(answer=False)
    async with running(data_dir, setup=worker) as h:
        await create(h, {**SUGGESTING, "rules": []})
        await h.publish(anonymized("support", TICKETS[:3]))
        await eventually(lambda: len(worker.requests) == 3)
        first, second, third = worker.requests
        await worker.reply(first, text="", choices=[], error="no", error_type="not_found")
        await worker.reply(second, text="refunds", choices=[])
        await worker.reply(third, error=None)
        outcomes = [a.outcome for a in asks(h)]
        assert outcomes == ["error:not_found", "unreadable-answer", "human"]
        assert [t.status for _, t in sorted(tasks(h).items())] == ["open"] * 3
        assert h.app.state.suggester.on_reply(b"not json") == "unreadable"


async def test_a_more_confident_rule_suggestion_is_kept(data_dir: Path) -> None:
    async with running(data_dir, setup=FakeWorker()) as h:
        spec = {
            **SUGGESTING,
            "rules": [{"label": "account", "keywords": ["package"], "confidence": 0.8}],
        }
        await create(h, spec)
        await h.publish(anonymized("support", TICKETS[3:4]))  # t4: the model says 0.3
        await eventually(lambda: asks(h) and asks(h)[0].state == "answered")
        ask, task = asks(h)[0], tasks(h)["t4"]
        assert (ask.outcome, ask.label, ask.confidence) == ("kept", "shipping", 0.3)
        assert (task.suggestion, task.confidence, task.suggestion_source) == (
            "account",
            0.8,
            "rule:0",
        )


async def test_projects_without_suggestions_ask_nothing(data_dir: Path) -> None:
    worker = FakeWorker()
    async with running(data_dir, setup=worker) as h:
        await create(h, {**PROJECT, "rules": []})
        await h.publish(anonymized("support", TICKETS))
        await h.app.state.suggester.step()
        assert worker.requests == []
        assert asks(h) == []
