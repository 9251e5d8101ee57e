"""Synthetic inference traffic, in-distribution or drifted (the demo stage and the tests).

Records are shaped exactly as anonymization republishes ``InferenceCompleted``: a
``RecordsAnonymized`` of dataset ``inference.<model>`` whose metadata carries the usage.
"""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta

from shared.events import RecordsAnonymized
from shared.events.privacy import AnonymizedRecord

NORMAL_TOPICS = [
    ("I cannot log in after the password reset", "account"),
    ("please send me a copy of last month's invoice", "billing"),
    ("the app crashes when I open the settings page", "bug"),
    ("how do I export my data to a csv file", "howto"),
    ("my card was charged twice for the same order", "billing"),
    ("the reset link in the email has expired", "account"),
]
DRIFTED_TOPICS = [
    ("Quelle est la politique de remboursement pour les abonnements annuels en Europe", "refund"),
    ("Wie kann ich meine Lieferadresse nach der Bestellung noch ändern lassen bitte", "shipping"),
    (
        "Explain in detail the tax treatment of cross-border digital services for our "
        "subsidiaries, with examples for each jurisdiction",
        "legal",
    ),
]
FILLER = ["today", "again", "urgently", "since yesterday", "on my phone", "on the web", ""]


def prompts(n: int, *, drifted: bool, seed: int) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    pool = DRIFTED_TOPICS if drifted else NORMAL_TOPICS
    out = []
    for _ in range(n):
        text, label = rng.choice(pool)
        out.append((f"{text} {rng.choice(FILLER)}".strip(), label))
    return out


def inference_batch(
    model: str, version: str, n: int, *, drifted: bool, seed: int, error_rate: float = 0.0
) -> list[RecordsAnonymized]:
    """``n`` events of one anonymized inference record each (as anonymization emits them)."""
    rng = random.Random(seed + 7)
    events = []
    # spread over the last n / 10 seconds (~10 requests/s), as traffic would be
    at = datetime.now(UTC) - timedelta(seconds=n / 10)
    clock = random.Random(seed + 13)  # its own stream: timing never changes the contents
    for prompt, label in prompts(n, drifted=drifted, seed=seed):
        at += timedelta(seconds=clock.expovariate(10.0))
        request_id = uuid.uuid4().hex
        completion = rng.randint(24, 40) if drifted else rng.randint(4, 10)
        latency = rng.gauss(900 if drifted else 300, 40)
        error = rng.random() < error_rate
        record = AnonymizedRecord(
            record_id=f"inference:{request_id}",
            text="" if error else label,
            metadata={
                "model": model,
                "model_version": version,
                "prompt": prompt,
                "finish_reason": "error" if error else "stop",
                "prompt_tokens": len(prompt.split()) + 3,
                "completion_tokens": 0 if error else completion,
                "latency_ms": max(latency, 1.0),
                "ttft_ms": max(rng.gauss(40, 5), 1.0),
                "error": "internal" if error else None,
                "request_id": request_id,
            },
        )
        events.append(
            RecordsAnonymized(
                dataset=f"inference.{model}",
                records=[record],
                count=1,
                producer="anonymization",
                occurred_at=at,
            )
        )
    return events
