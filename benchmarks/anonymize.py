"""Anonymization throughput and quality, each against a peer measured in the same run.

Speed: docs/s of the service's whole pipeline (RecordsIngested on Kafka in -> Presidio
batch analysis, keyed pseudonyms, vault sealing, outbox -> RecordsAnonymized on Kafka out),
against raw Presidio (BatchAnalyzerEngine batch 64 + AnonymizerEngine) on the same
documents in this process. Goal: >= 0.9x.
Quality: precision / recall / F2 per entity type on the templated PII corpus, against
vanilla Presidio with the same spaCy model.

    .venv/bin/python benchmarks/anonymize.py [--docs 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from presidio_analyzer import BatchAnalyzerEngine  # noqa: E402
from presidio_anonymizer import AnonymizerEngine  # noqa: E402

from services.anonymization.adapters.presidio import PresidioEngine, spacy_analyzer  # noqa: E402
from services.anonymization.config import AnonymizationSettings  # noqa: E402
from shared.events import RecordsIngested  # noqa: E402
from shared.events.ingest import Record  # noqa: E402
from shared.topics import Topic  # noqa: E402
from tests.anonymization.corpus import generate  # noqa: E402
from tests.anonymization.quality import presidio_spans, score, table  # noqa: E402
from tests.support.stack import ServiceProcess, embedded_kafka, produce  # noqa: E402

BATCH = 100
MACHINE = "2-core x86_64, 24 GiB, no GPU"


def raw_presidio(texts: list[str], analyzer: BatchAnalyzerEngine) -> float:
    anonymizer = AnonymizerEngine()
    started = time.perf_counter()
    results = analyzer.analyze_iterator(texts, language="en", batch_size=64)
    for text, found in zip(texts, results, strict=True):
        anonymizer.anonymize(text, found)
    return len(texts) / (time.perf_counter() - started)


async def _count_outputs(bootstrap: str, want: int, timeout: float) -> float:
    """Wait until ``want`` anonymized records arrived; returns the arrival time."""
    from aiokafka import AIOKafkaConsumer

    from shared.events import decode

    consumer = AIOKafkaConsumer(
        Topic.RECORDS_ANONYMIZED.value,
        bootstrap_servers=bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    seen = 0
    deadline = time.monotonic() + timeout
    try:
        while seen < want and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            for records in batch.values():
                seen += sum(decode(r.value).count for r in records)  # type: ignore[attr-defined]
    finally:
        await consumer.stop()
    if seen < want:
        raise TimeoutError(f"only {seen}/{want} records anonymized in {timeout}s")
    return time.perf_counter()


def batches(texts: list[str], run: str) -> list[bytes]:
    request = uuid.uuid4()
    out = []
    for index in range(0, len(texts), BATCH):
        records = [
            Record(record_id=f"{run}-{index + i}", text=t)
            for i, t in enumerate(texts[index : index + BATCH])
        ]
        out.append(
            RecordsIngested(
                dataset=f"bench-{run}",
                request_id=request,
                batch_index=index // BATCH,
                records=records,
                count=len(records),
            ).to_bytes()
        )
    return out


def interleaved(
    texts: list[str], work: Path, raw_peer: Callable[[], float], rounds: int
) -> tuple[list[float], list[float]]:
    """Service rounds (one warm service process) alternating with raw Presidio rounds.

    The machine is shared, so both sides are measured in turns and compared by median.
    """
    service_rates: list[float] = []
    raw_rates: list[float] = []
    with embedded_kafka(work) as bootstrap:
        env = {
            "LLMOPS_KAFKA_BOOTSTRAP": bootstrap,
            "LLMOPS_DATA_DIR": str(work / "data"),
            "LLMOPS_ANONYMIZATION_API_PORT": "0",
            "LLMOPS_LOG_LEVEL": "WARNING",
        }
        service = ServiceProcess("services.anonymization", env, work / "service.log").start(240)
        try:
            warm = texts[:BATCH]
            asyncio.run(produce(bootstrap, Topic.RECORDS_INGESTED.value, batches(warm, "warm")))
            total = asyncio.run(_count_outputs(bootstrap, len(warm), 300)) and len(warm)
            for round_ in range(rounds):
                raw_rates.append(raw_peer())
                started = time.perf_counter()
                asyncio.run(
                    produce(bootstrap, Topic.RECORDS_INGESTED.value, batches(texts, f"run{round_}"))
                )
                total += len(texts)
                finished = asyncio.run(_count_outputs(bootstrap, total, 900))
                service_rates.append(len(texts) / (finished - started))
            raw_rates.append(raw_peer())
        finally:
            service.stop()
    return service_rates, raw_rates


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--docs", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    docs = generate(args.docs, seed=21)
    texts = [d.text for d in docs]
    settings = AnonymizationSettings()
    vanilla = BatchAnalyzerEngine(spacy_analyzer(settings.spacy_model))
    raw_presidio(texts[:200], vanilla)  # warm-up
    with tempfile.TemporaryDirectory() as tmp:
        service_rates, raw_rates = interleaved(
            texts, Path(tmp), lambda: raw_presidio(texts, vanilla), args.rounds
        )
    service, raw = statistics.median(service_rates), statistics.median(raw_rates)
    ratio = service / raw
    print(
        f"raw Presidio batch + anonymizer: median {raw:.1f} docs/s "
        f"(rounds: {', '.join(f'{r:.0f}' for r in raw_rates)})"
    )
    print(
        f"service pipeline, Kafka in -> Kafka out: median {service:.1f} docs/s "
        f"(rounds: {', '.join(f'{r:.0f}' for r in service_rates)})"
    )
    print(f"ratio service / raw: {ratio:.2f}x (goal >= 0.9x)")

    quality_docs = generate(1000, seed=11)
    quality_texts = [d.text for d in quality_docs]
    ours = score(quality_docs, presidio_spans(PresidioEngine(settings).analyze(quality_texts)))
    theirs = score(
        quality_docs,
        presidio_spans(vanilla.analyze_iterator(quality_texts, language="en", batch_size=64)),
    )
    quality = table(ours, theirs)
    print(quality)

    lines = [
        "# Anonymization benchmark",
        "",
        f"- date: {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- machine: {MACHINE} ({platform.machine()}, Python {platform.python_version()})",
        f"- documents: {len(texts)} templated support texts (20% without PII), "
        f"{BATCH} per RecordsIngested batch; medians of {args.rounds} interleaved rounds "
        "(the 2 cores are shared with other work)",
        "",
        "## Throughput",
        "",
        "| pipeline | docs/s |",
        "|---|---|",
        f"| raw Presidio (BatchAnalyzerEngine batch 64 + AnonymizerEngine), in process "
        f"| {raw:.1f} (rounds {', '.join(f'{r:.0f}' for r in raw_rates)}) |",
        f"| anonymization service, Kafka in -> Kafka out (vault, outbox) | {service:.1f} "
        f"(rounds {', '.join(f'{r:.0f}' for r in service_rates)}) |",
        f"| **ratio** | **{ratio:.2f}x** (goal >= 0.9x) |",
        "",
        "## Detection quality (1000 templated documents, lenient span overlap)",
        "",
        quality,
        "",
    ]
    out = ROOT / "benchmarks" / "results" / "anonymize.md"
    out.write_text("\n".join(lines))
    print(f"written {out}")


if __name__ == "__main__":
    main()
