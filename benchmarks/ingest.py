"""Ingest throughput: read + clean + dedup, the service's pipeline against a reference.

The reference reads and cleans with the same code and dedups with datasketch's MinHash
(same 3-word shingles, same 128 "affine32" permutations and seed, sha1 shingle hashes)
and MinHashLSH at the same threshold, verifying candidates by estimated Jaccard like the
service. Both run on the same generated corpus with known clusters, in this process.
"""

from __future__ import annotations

import json
import platform
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from datasketch import MinHash, MinHashLSH  # noqa: E402

from services.ingestion.adapters.readers import read_source  # noqa: E402
from services.ingestion.domain.cleaning import CleaningConfig, clean  # noqa: E402
from services.ingestion.domain.dedup import DedupConfig, LSHIndex, fingerprint, shingles  # noqa: E402
from services.ingestion.domain.pipeline import Pipeline, RawRow, Report, record_id  # noqa: E402
from services.ingestion.synthetic import Doc, generate, score  # noqa: E402
from shared.events.ingest import FieldMapping, SourceSpec  # noqa: E402

REQUEST = "00000000-0000-0000-0000-00000000be00"
CHUNK = 2000
MACHINE = "2-core x86_64, 24 GiB, no GPU"


def rows_of(path: Path) -> list[RawRow]:
    return list(read_source(SourceSpec(uri=str(path)), max_line_bytes=4 << 20))


def ours(path: Path, config: DedupConfig) -> tuple[float, dict[int, int | None]]:
    started = time.perf_counter()
    pipeline = Pipeline(
        request_id=REQUEST,
        mapping=FieldMapping(),
        cleaning=CleaningConfig(),
        dedup=config,
        exact_index={},
        lsh=LSHIndex(config),
        fingerprint_key=b"bench",
    )
    report = Report()
    lineage = []
    chunk: list[RawRow] = []
    for row in read_source(SourceSpec(uri=str(path)), max_line_bytes=4 << 20):
        chunk.append(row)
        if len(chunk) == CHUNK:
            lineage += pipeline.process(chunk, report).lineage
            chunk = []
    lineage += pipeline.process(chunk, report).lineage
    elapsed = time.perf_counter() - started
    index = {record_id(REQUEST, str(path), i): i - 1 for i in range(1, report.read + 1)}
    kept_of = {
        index[e.record_id]: None if e.duplicate_of is None else index[e.duplicate_of]
        for e in lineage
    }
    return elapsed, kept_of


def reference(path: Path, config: DedupConfig) -> tuple[float, dict[int, int | None]]:
    started = time.perf_counter()
    cleaning = CleaningConfig()
    lsh = MinHashLSH(threshold=config.threshold, num_perm=config.num_perm)
    sigs: dict[int, MinHash] = {}
    exact: dict[str, int] = {}
    kept_of: dict[int, int | None] = {}
    for position, row in enumerate(read_source(SourceSpec(uri=str(path)), max_line_bytes=4 << 20)):
        text = row.fields.get("text") if isinstance(row.fields, dict) else None
        if not isinstance(text, str) or not text.strip():
            continue
        result = clean(text, cleaning)
        if result.dropped_by:
            continue
        fp = fingerprint(result.text, b"bench")
        if fp in exact:
            kept_of[position] = exact[fp]
            continue
        minhash = MinHash(num_perm=config.num_perm, seed=config.seed)
        minhash.update_batch([s.encode() for s in shingles(result.text, config.shingle_size)])
        best, best_sim = None, 0.0
        for candidate in lsh.query(minhash):
            similarity = minhash.jaccard(sigs[candidate])
            if similarity >= config.threshold and similarity > best_sim:
                best, best_sim = candidate, similarity
        if best is not None:
            kept_of[position] = best
            continue
        lsh.insert(position, minhash)
        sigs[position] = minhash
        exact[fp] = position
        kept_of[position] = None
    return time.perf_counter() - started, kept_of


def best_of(runs: int, fn, *args):  # type: ignore[no-untyped-def]
    results = [fn(*args) for _ in range(runs)]
    return min(results, key=lambda r: r[0])


def main() -> None:
    docs: list[Doc] = generate(6000, seed=2026)
    config = DedupConfig()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "corpus.jsonl"
        path.write_text("".join(json.dumps({"text": d.text}) + "\n" for d in docs))
        size_mb = path.stat().st_size / 1e6
        read_s = best_of(3, lambda: (time.perf_counter(), rows_of(path)))
        del read_s
        ours_s, ours_kept = best_of(3, ours, path, config)
        ref_s, ref_kept = best_of(3, reference, path, config)
    ours_q, ref_q = score(docs, ours_kept), score(docs, ref_kept)
    ours_rate, ref_rate = len(docs) / ours_s, len(docs) / ref_s
    ratio = ours_rate / ref_rate
    lines = [
        "# Ingest benchmark: read + clean + dedup",
        "",
        f"- date: {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- machine: {MACHINE} (python {platform.python_version()})",
        f"- corpus: {len(docs):,} generated documents ({size_mb:.1f} MB JSONL), "
        f"{ours_q['expected']:,} of them exact or near copies in known clusters",
        f"- dedup: MinHash {config.num_perm} permutations (affine32, seed {config.seed}), "
        f"{config.shingle_size}-word shingles, LSH threshold {config.threshold}",
        "- best of 3 runs each, same process",
        "",
        "| pipeline | records/s | precision | recall | F1 |",
        "|---|---:|---:|---:|---:|",
        f"| llmops ingestion (numpy batch MinHash + LSH) | {ours_rate:,.0f} | "
        f"{ours_q['precision']:.3f} | {ours_q['recall']:.3f} | {ours_q['f1']:.3f} |",
        f"| reference (datasketch MinHash + MinHashLSH) | {ref_rate:,.0f} | "
        f"{ref_q['precision']:.3f} | {ref_q['recall']:.3f} | {ref_q['f1']:.3f} |",
        "",
        f"ratio: **{ratio:.2f}x** the reference's records/s (goal >= 0.9x), "
        f"F1 {ours_q['f1']:.3f} vs {ref_q['f1']:.3f} (goal: equal or better).",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    out = ROOT / "benchmarks" / "results" / "ingest.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)


if __name__ == "__main__":
    main()
