"""Asks the promoted model for suggestions on open tasks, through Kafka like any inference.

A background loop picks open, unanswered tasks of projects with ``model_suggestions``
enabled, oldest first, at most ``max_in_flight`` unanswered per project. Each question is a
row in ``labeling_model_ask`` (committed before the request is published: one question per
task, whoever asks) and an ``InferenceRequested`` whose ``reply_to`` is this service's reply
topic. A reply is applied in one unit of work with its row, and only while that row is
pending with the same request id: a redelivered or late reply changes nothing. A question
unanswered after ``timeout_s`` expires and its task stays with people. At start the questions
this reply topic left pending are forgotten and asked again (their replies would be lost
with the process); replies to the old request ids are then ignored.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta

from opentelemetry import metrics
from sqlmodel import Session, col, delete, func, select

from services.labeling import suggestions
from services.labeling.adapters.store import ModelAskRow, ProjectRow, RecordRow, TaskRow, now
from services.labeling.service import Labeling, spec_of
from shared.background import BackgroundLoop
from shared.bus import EventBus, UnitOfWork
from shared.events import EventDecodeError
from shared.events.serving import InferenceCompleted, InferenceRequested
from shared.wire import decode_reply

log = logging.getLogger(__name__)
_outcomes = metrics.get_meter("llmops.labeling").create_counter(
    "llmops_labeling_model_suggestions", description="Model suggestions, by outcome."
)


class ModelSuggester:
    def __init__(
        self,
        labeling: Labeling,
        bus: EventBus,
        reply_to: str,
        *,
        interval_s: float = 1.0,
        clock: Callable[[], datetime] = now,
    ) -> None:
        self.labeling = labeling
        self.bus = bus
        self.reply_to = reply_to
        self.clock = clock
        self._loop = BackgroundLoop(
            "model-suggestions", self.step, interval_s=interval_s, max_retry_s=30.0
        )

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        self.forget_pending()
        await self._loop.start()
        self._loop.kick()

    async def stop(self) -> None:
        await self._loop.stop()

    def alive(self) -> bool:
        return self._loop.alive()

    def kick(self) -> None:
        self._loop.kick()

    def forget_pending(self) -> int:
        """Drop this reply topic's unanswered questions: their tasks are asked again."""
        assert self.bus.engine is not None
        with Session(self.bus.engine) as session:
            result = session.exec(
                delete(ModelAskRow).where(
                    col(ModelAskRow.reply_to) == self.reply_to, col(ModelAskRow.state) == "pending"
                )
            )  # type: ignore[call-overload]
            session.commit()
            return int(result.rowcount or 0)

    # -- asking ----------------------------------------------------------------------------
    async def step(self) -> bool:
        """Expire overdue questions, then ask for as many tasks as there are free slots."""
        questions = self._claim()
        for index, request in enumerate(questions):
            try:
                await self.bus.publish(request)
            except Exception:
                self._unclaim([q.request_id for q in questions[index:]])
                raise
        return False

    def _claim(self) -> list[InferenceRequested]:
        assert self.bus.engine is not None
        moment = self.clock()
        questions: list[InferenceRequested] = []
        with Session(self.bus.engine) as session:
            for project in session.exec(select(ProjectRow)).all():
                spec = spec_of(project)
                options = spec.model_suggestions
                self._expire(session, project.name, moment - timedelta(seconds=options.timeout_s))
                if not options.enabled:
                    continue
                free = options.max_in_flight - self._pending(session, project.name)
                if free <= 0:
                    continue
                asked = select(ModelAskRow.task_id)
                tasks = session.exec(
                    select(TaskRow)
                    .where(
                        TaskRow.project == project.name,
                        TaskRow.status == "open",
                        TaskRow.answers == 0,
                        col(TaskRow.id).not_in(asked),
                    )
                    .order_by(col(TaskRow.id))
                    .limit(free)
                ).all()
                for task in tasks:
                    assert task.id is not None
                    assert options.model is not None
                    record = session.get(RecordRow, (task.dataset, task.record_id))
                    request_id = str(uuid.uuid4())
                    session.add(
                        ModelAskRow(
                            task_id=task.id,
                            project=project.name,
                            request_id=request_id,
                            reply_to=self.reply_to,
                            model=options.model,
                            asked_at=moment,
                        )
                    )
                    text = record.text if record is not None else ""
                    questions.append(
                        suggestions.question(
                            spec, text, request_id=request_id, reply_to=self.reply_to
                        )
                    )
            session.commit()  # before publishing: a reply may come back at once
        return questions

    @staticmethod
    def _pending(session: Session, project: str) -> int:
        return int(
            session.exec(
                select(func.count())
                .select_from(ModelAskRow)
                .where(ModelAskRow.project == project, ModelAskRow.state == "pending")
            ).one()
        )

    def _expire(self, session: Session, project: str, cutoff: datetime) -> None:
        overdue = session.exec(
            select(ModelAskRow).where(
                ModelAskRow.project == project,
                ModelAskRow.state == "pending",
                col(ModelAskRow.asked_at) < cutoff,
            )
        ).all()
        for ask in overdue:
            ask.state, ask.outcome = "expired", "timeout"
            session.add(ask)
        if overdue:
            _outcomes.add(len(overdue), {"outcome": "timeout"})
            log.warning("model questions timed out", extra={"project": project, "n": len(overdue)})

    def _unclaim(self, request_ids: list[str]) -> None:
        """Questions that were never sent: their tasks are asked again on the next step."""
        assert self.bus.engine is not None
        with Session(self.bus.engine) as session:
            session.exec(delete(ModelAskRow).where(col(ModelAskRow.request_id).in_(request_ids)))  # type: ignore[call-overload]
            session.commit()

    # -- answers ---------------------------------------------------------------------------
    def on_reply(self, frame: bytes) -> str:
        """Apply one record of the reply topic; returns the outcome (never raises for a bad
        frame: one unreadable record must not stop the replies behind it)."""
        try:
            reply = decode_reply(frame)
        except (EventDecodeError, ValueError) as exc:
            log.warning("unreadable reply skipped", extra={"error": type(exc).__name__})
            return "unreadable"
        if not isinstance(reply, InferenceCompleted):
            return "ignored"  # streamed chunks (never asked for) or another event
        with self.bus.unit_of_work() as uow:
            outcome = self.apply(uow, reply)
        _outcomes.add(1, {"outcome": outcome.split(":", 1)[0]})
        self.kick()  # a slot is free
        return outcome

    def apply(self, uow: UnitOfWork, reply: InferenceCompleted) -> str:
        session = uow.session
        ask = session.exec(
            select(ModelAskRow).where(ModelAskRow.request_id == reply.request_id)
        ).first()
        if ask is None or ask.state != "pending":
            return "stale"  # a redelivery, a reply after its timeout, or to a forgotten question
        ask.state, ask.answered_at = "answered", self.clock()
        ask.model_version = reply.model_version or None
        session.add(ask)
        task = session.get(TaskRow, ask.task_id)
        project = session.get(ProjectRow, ask.project)
        if reply.error is not None or task is None or project is None:
            ask.outcome = f"error:{reply.error_type or 'internal'}" if reply.error else "gone"
            return ask.outcome
        suggestion = suggestions.read_answer(spec_of(project), reply)
        if suggestion is None:
            ask.outcome = "unreadable-answer"
            return ask.outcome
        ask.label, ask.confidence = suggestion.label, suggestion.confidence
        if task.confidence is not None and task.confidence > suggestion.confidence:
            ask.outcome = "kept"  # the rule's suggestion is the more confident one
        else:
            ask.outcome = self.labeling.set_suggestion(uow, task, suggestion)
        return ask.outcome
