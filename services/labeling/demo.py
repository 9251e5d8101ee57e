"""Demo stage: a project on the demo tickets, simulated annotators who sometimes disagree
(through the REST API, as the web UI does), conflicts adjudicated, agreement printed, and a
labeled, split dataset version cut and published for training.

Uses the dataset the ingestion stage left in ``ctx.results``; without it, publishes its own
small anonymized batch.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from typing import Any

import httpx

from services.labeling.config import LabelingSettings
from shared.client import PlatformClient
from shared.events import RecordsAnonymized
from shared.events.privacy import AnonymizedRecord

LABELS = ["account", "billing", "shipping", "technical"]
OWN_DATASET = "labeling-demo"
OWN_TICKETS = {
    "billing": ["I was charged twice this month.", "My invoice lists a plan I never chose."],
    "shipping": ["My parcel has not arrived yet.", "The package went to the wrong address."],
    "account": ["I cannot log in since the reset.", "Please close my account."],
    "technical": ["The app crashes on start.", "Uploading a file fails with error 500."],
}
ANNOTATORS = {"ann": 0.92, "bob": 0.85, "cid": 0.75}  # how often each picks the right label


def _project(dataset: str) -> dict[str, Any]:
    return {
        "name": "ticket-routing",
        "task": "classification",
        "labels": LABELS,
        "datasets": [dataset],
        "instruction": "Which team should handle this support ticket?",
        "overlap": 2,
        "auto_threshold": 0.95,
        "rules": [
            {"label": "billing", "keywords": ["charged twice", "invoice"], "confidence": 0.97},
            {"label": "technical", "keywords": ["crashes", "error 500"], "confidence": 0.7},
        ],
    }


def _own_batch(ctx: Any) -> str:
    rng = random.Random(3)
    records = [
        AnonymizedRecord(
            record_id=f"demo-{i}",
            text=f"{rng.choice(texts)} (ticket {i})",
            metadata={"category": label},
        )
        for i, (label, texts) in enumerate(
            (label, OWN_TICKETS[label]) for label in rng.choices(LABELS, k=48)
        )
    ]

    async def send() -> None:
        async with PlatformClient(ctx.settings, producer_name="demo") as client:
            await client.publish(
                RecordsAnonymized(dataset=OWN_DATASET, records=records, count=len(records))
            )

    asyncio.run(send())
    return OWN_DATASET


def _create_project(http: httpx.Client, spec: dict[str, Any], timeout: float = 120) -> None:
    """POST the project (a signed command the service applies) and wait until applied."""
    res = http.post("/api/projects", content=json.dumps(spec)).raise_for_status()
    body = res.json()
    deadline = time.monotonic() + timeout
    while body["status"] == "pending":  # 202: published, not applied yet
        if time.monotonic() > deadline:
            raise TimeoutError(f"project command {body['command_id']} not applied")
        time.sleep(0.5)
        body = http.get(f"/api/project-commands/{body['command_id']}").raise_for_status().json()
    if body["status"] == "rejected":
        raise ValueError(f"project rejected: {body['error']}")


def _wait_for_tasks(http: httpx.Client, project: str, timeout: float = 60) -> dict[str, Any]:
    deadline, last, stable = time.monotonic() + timeout, -1, 0
    while True:
        stats = http.get(f"/api/projects/{project}").raise_for_status().json()
        stable = stable + 1 if stats["tasks"] == last and stats["tasks"] > 0 else 0
        if stable >= 3 or time.monotonic() > deadline:
            return stats  # type: ignore[no-any-return]
        last = stats["tasks"]
        time.sleep(0.5)


def _annotate(base: str, key: str, project: str, accuracy: float, seed: int) -> int:
    rng = random.Random(seed)
    done = 0
    with httpx.Client(base_url=base, headers={"authorization": f"Bearer {key}"}, timeout=30) as h:
        while (res := h.get(f"/api/projects/{project}/next")).status_code == 200:
            task = res.json()
            truth = task["meta"].get("category") or (task["suggestion"] or {}).get("label")
            truth = truth if truth in LABELS else LABELS[0]
            label = (
                truth
                if rng.random() < accuracy
                else rng.choice([lbl for lbl in LABELS if lbl != truth])
            )
            h.post(
                f"/api/projects/{project}/tasks/{task['task_id']}/answer",
                json={"label": label, "seconds": round(rng.uniform(2, 9), 1)},
            ).raise_for_status()
            done += 1
    return done


def run(ctx: Any) -> None:
    settings = LabelingSettings()
    base = settings.base_url()
    dataset = ctx.results.get("dataset") or _own_batch(ctx)
    spec = _project(dataset)
    project = spec["name"]
    admin = {"authorization": f"Bearer {ctx.admin_key}"}
    with httpx.Client(base_url=base, headers=admin, timeout=60) as http:
        _create_project(http, spec)
        stats = _wait_for_tasks(http, project)
        ctx.say(
            f"project {project} on {dataset}: {stats['tasks']} tasks, "
            f"{stats['status']['final']} auto-labeled by rules (confidence >= 0.95)"
        )
        keys = {
            name: http.post("/api/annotators", json={"name": name}).raise_for_status().json()["key"]
            for name in ANNOTATORS
        }

        async def everyone() -> list[int]:
            return list(
                await asyncio.gather(
                    *(
                        asyncio.to_thread(_annotate, base, keys[name], project, accuracy, i)
                        for i, (name, accuracy) in enumerate(ANNOTATORS.items())
                    )
                )
            )

        answers = asyncio.run(everyone())
        ctx.say(
            f"simulated annotators {', '.join(ANNOTATORS)} gave {sum(answers)} answers (overlap 2)"
        )
        conflicts = http.get(f"/api/projects/{project}/conflicts").raise_for_status().json()
        for task in conflicts:
            truth = task["meta"].get("category")
            label = truth if truth in LABELS else task["votes"][0]["label"]
            http.post(
                f"/api/projects/{project}/tasks/{task['task_id']}/adjudicate", json={"label": label}
            ).raise_for_status()
        stats = http.get(f"/api/projects/{project}").raise_for_status().json()
        agreement = stats["agreement"]
        ctx.say(
            f"{len(conflicts)} conflicts adjudicated; agreement: Cohen's kappa "
            f"{agreement['cohen_kappa']}, Fleiss' kappa {agreement['fleiss_kappa']}, "
            f"Krippendorff's alpha {agreement['krippendorff_alpha']}"
        )
        for row in stats["annotators"]:
            ctx.say(
                f"  {row['annotator']}: {row['labels']} labels, agreement with final "
                f"{row['agreement_with_final']}"
            )
        version = http.post(f"/api/projects/{project}/cut").raise_for_status().json()
    ctx.say(
        f"labeled version {version['dataset']}@{version['version']}: {version['records']} "
        f"records, provenance {stats['provenance']}; UI: {base}/ui"
    )
    ctx.results["labeled_version"] = {"dataset": version["dataset"], "version": version["version"]}
