"""Demo stage: ingest a small support-ticket corpus with bad lines and duplicates.

Writes the corpus into the data dir's ``inbox/`` (the source policy always allows it),
sends an IngestRequested through the SDK client (as `llmops ingest --wait --version` does),
prints the report, waits for the version (labeling cuts it from the anonymized records
and the report's lineage, so anonymization and labeling must be up), and leaves the
dataset name, version and counts in ``ctx.results`` for the stages after it.
"""

from __future__ import annotations

import asyncio
import json
import random
from pathlib import Path
from typing import Any

from shared.client import PlatformClient
from shared.datasets import iter_lineage, load_manifest
from shared.events import DatasetVersioned, IngestCompleted, IngestRequested
from shared.events.ingest import FieldMapping, SourceSpec
from shared.storage import ArtifactStore
from shared.topics import Topic

DATASET = "support-tickets"
NAMES = ["Alice Martin", "Bob Chen", "Carla Diaz", "David Okafor", "Emma Novak", "Farid Haddad"]
TEMPLATES = {
    "shipping": [
        "Hi, this is {name}. My order {order} has not arrived after {days} days. "
        "Please send updates to {email}.",
        "Order {order} shows delivered but nothing is at my door. You can call me at {phone}.",
    ],
    "billing": [
        "I was charged twice for order {order}. Please refund the extra payment to my card. "
        "Regards, {name}",
        "My invoice for {month} lists a plan I never subscribed to. Contact me at {email}.",
    ],
    "account": [
        "I cannot log in since the password reset on {month} {days}. My user is {email}.",
        "Please close my account and delete my data. Thanks, {name} ({phone}).",
    ],
    "technical": [
        "The mobile app crashes every time I open the settings page on version 4.{days}.",
        "Uploading a file larger than {days} MB fails with an error 500. Reported by {name}.",
    ],
}
MONTHS = ["January", "March", "May", "July", "September", "November"]
DETAILS = [
    "I already tried restarting everything twice.",
    "This is the third time I write to you.",
    "Your chat assistant could not help me.",
    "I have been a customer for {days} years.",
    "It worked fine until last week.",
    "My colleague has the same problem.",
    "Please treat this as urgent.",
    "I attached a screenshot of the error.",
    "The tracking page has not changed since {month}.",
    "I use the web version on a laptop.",
    "Nobody answered my previous email.",
    "I would like a reply before Friday.",
    "The issue started after the latest update.",
    "I am travelling next week.",
    "A refund would be acceptable too.",
    "I checked the spam folder already.",
]


def _ticket(rng: random.Random) -> dict[str, Any]:
    category = rng.choice(sorted(TEMPLATES))
    name = rng.choice(NAMES)
    parts = [rng.choice(TEMPLATES[category]), *rng.sample(DETAILS, rng.randint(2, 3))]
    text = " ".join(parts).format(
        name=name,
        order=f"#{rng.randint(10000, 99999)}",
        days=rng.randint(2, 30),
        email=name.lower().replace(" ", ".") + "@example.com",
        phone=f"+1 555 {rng.randint(100, 999)} {rng.randint(1000, 9999)}",
        month=rng.choice(MONTHS),
    )
    return {"text": text, "category": category}


def write_corpus(directory: Path, count: int = 150, seed: int = 42) -> tuple[Path, int]:
    """The corpus file and how many bad lines it holds."""
    rng = random.Random(seed)
    tickets = [{"id": f"t{n:03}", **_ticket(rng)} for n in range(1, count + 1)]
    lines = [json.dumps(t).encode() for t in tickets]
    lines += [json.dumps(t).encode() for t in rng.sample(tickets, 10)]  # exact duplicates
    lines += [  # near duplicates: the same ticket sent again with a word more
        json.dumps({**t, "text": t["text"] + " Thanks!"}).encode() for t in rng.sample(tickets, 6)
    ]
    bad = [
        b'{"text": "unterminated',
        b'{"body": "no text field"}',
        b'{"text": ""}',
        b'{"text": "caf\xe9 latin-1"}',
    ]
    lines += bad
    rng.shuffle(lines)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "tickets.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path, len(bad)


def run(ctx: Any) -> None:
    # the inbox: the one place in the data dir the source policy lets ingestion read
    path, bad = write_corpus(Path(ctx.settings.data_dir).resolve() / "inbox" / "demo")
    ctx.say(f"wrote {path} ({bad} bad lines, some duplicates)")
    request = IngestRequested(
        dataset=DATASET,
        sources=[SourceSpec(uri=str(path))],
        mapping=FieldMapping(id_field="id", metadata_fields=["category"]),
        cut_version=True,
    )

    async def ingest() -> tuple[IngestCompleted, DatasetVersioned]:
        async with PlatformClient(ctx.settings, producer_name="demo") as client:
            sent = await client.publish(request)
            report = await client.wait_for(
                Topic.INGEST_COMPLETED, lambda e: e.request_id == sent.event_id, timeout_s=180
            )
            # labeling cuts the version from the anonymized records, once all are back
            versioned = await client.wait_for(
                Topic.DATASET_VERSIONED, lambda e: e.causation_id == sent.event_id, timeout_s=300
            )
            return report, versioned

    report, versioned = asyncio.run(ingest())
    ctx.say(
        f"read {report.read}, emitted {report.emitted}, malformed {report.malformed}, "
        f"exact dups {report.exact_duplicates}, near dups {report.near_duplicates}, "
        f"filtered {dict(report.filtered)}, batches {report.batches}"
    )
    for error in report.errors[:6]:
        ctx.say(f"  {Path(error.source).name}:{error.line}: {error.reason}")
    ctx.say(
        f"dataset version {DATASET}@{versioned.version}: {versioned.records} records, "
        "cut from the anonymized text"
    )
    store = ArtifactStore(ctx.settings.artifact_root)
    manifest = load_manifest(store, versioned.manifest)
    found = [e for e in iter_lineage(store, manifest) if e.get("source_id") == "t001"]
    where = f"record {found[0]['record_id'][:12]}, line {found[0]['line']}" if found else "not kept"
    ctx.say(f"ticket t001 in the version: {where} (llmops datasets show {DATASET} --record t001)")
    if report.failed or report.emitted == 0 or report.malformed != bad:
        raise RuntimeError(f"ingest did not go as expected: {report.model_dump_json()}")
    ctx.results.update(
        dataset=DATASET,
        dataset_version=versioned.version,
        ingest_request_id=str(report.request_id),
        ingested_records=report.emitted,
        correlation_id=str(report.correlation_id),
    )
