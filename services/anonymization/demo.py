"""Demo stage: anonymized batches, entity counts, one sample, then an erasure and its report."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx

from shared.client import PlatformClient
from shared.events import RecordsAnonymized, RecordsIngested
from shared.events.ingest import Record
from shared.topics import Topic

PLANTED = [
    "Hi, my name is Grace Whitaker, reach me at grace.whitaker@example.com or +44 20 7946 0321.",
    "Grace Whitaker paid with 4111 1111 1111 1111; refund to DE89 3704 0044 0532 0130 00 please.",
    "Login for Omar Haddad came from 203.0.113.77; ship the parcel to 742 Evergreen Terrace.",
    "The app crashes when I open the settings page.",
]
SUBJECT = "Grace Whitaker"


def run(ctx: Any) -> None:
    asyncio.run(_run(ctx))


async def _run(ctx: Any) -> None:
    from services.anonymization.cli import aggregate, collect_answers
    from services.anonymization.config import AnonymizationSettings

    cfg = AnonymizationSettings(
        data_dir=ctx.settings.data_dir, kafka_bootstrap=ctx.settings.kafka_bootstrap
    )
    async with PlatformClient(ctx.settings, producer_name="demo") as client:
        dataset = ctx.results.get("dataset")
        if dataset:
            batch = await client.wait_for(
                Topic.RECORDS_ANONYMIZED, lambda e: e.dataset == dataset, timeout_s=180
            )
            ctx.say(f"ingested dataset {dataset!r} anonymized: {_counts(batch)}")
        request = RecordsIngested(
            dataset="demo-privacy",
            request_id=uuid.uuid4(),
            batch_index=0,
            count=len(PLANTED),
            records=[Record(record_id=f"demo-{i}", text=t) for i, t in enumerate(PLANTED)],
        )
        await client.publish(request)
        ctx.say(f"published {len(PLANTED)} records with planted PII (ingest hop)")
        batch = await client.wait_for(
            Topic.RECORDS_ANONYMIZED,
            lambda e: isinstance(e, RecordsAnonymized) and e.request_id == request.request_id,
            timeout_s=180,
        )
        ctx.say(f"entities replaced: {_counts(batch)}")
        for record in batch.records[:2]:
            ctx.say(f"  {record.record_id}: {record.text}")
        erase = await asyncio.to_thread(
            _post, cfg, "/v1/erasures", ctx.admin_key, {"subject": SUBJECT}
        )
        erase.raise_for_status()
        ctx.say(f"erase --subject {SUBJECT} (the service derives the subject reference)")
        request_id = uuid.UUID(erase.json()["request_id"])
        report = aggregate(await collect_answers(client, request_id, 60.0, 3.0))
    if not report["answered"]:
        raise RuntimeError("no ErasureCompleted from anonymization within 60 s")
    ctx.say(f"  records holding the subject: {', '.join(report['records']) or '-'}")
    ctx.say(
        f"  dataset versions: {', '.join(report['dataset_versions']) or '-'}; "
        f"models: {', '.join(report['model_versions']) or '-'}"
    )
    for name, answer in report["services"].items():
        ctx.say(f"  {name} removed {answer['removed']}")
    ctx.results["erased_records"] = report["records"]
    status = _deanonymize_status(cfg, ctx.admin_key, report["records"][0])
    ctx.say(f"  de-anonymizing {report['records'][0]} now answers HTTP {status} (erased)")


def _counts(batch: RecordsAnonymized) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(batch.entity_counts.items())) or "none"


def _post(cfg: Any, path: str, admin_key: str, body: dict[str, Any]) -> httpx.Response:
    url = f"http://{cfg.api_host}:{cfg.api_port}{path}"
    return httpx.post(url, json=body, headers={"X-API-Key": admin_key}, timeout=10)


def _deanonymize_status(cfg: Any, admin_key: str, record_id: str) -> int:
    try:
        response = _post(
            cfg, "/v1/deanonymize", admin_key, {"record_id": record_id, "reason": "demo"}
        )
    except httpx.HTTPError:
        return 0
    return response.status_code
