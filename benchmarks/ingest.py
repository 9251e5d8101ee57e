"""Ingest throughput: read + clean + dedup, the service's pipeline against a reference.

The reference reads and cleans with the same code and dedups with datasketch's MinHash
(same 3-word shingles, same 128 "affine32" permutations and seed, sha1 shingle hashes)
and MinHashLSH at the same threshold, verifying candidates by estimated Jaccard like the
service. Both run on the same generated corpus with known clusters, in this process.

End to end (same run, same file, unless ``--e2e-runs 0``): a fresh embedded log as
`llmops up` runs it by default (tansu on the durable, encrypted store, the serving hops'
memory broker beside it; ``--memory-log``: one memory broker), the ingestion service alone
as a real process (SQLite, local stores), and
``llmops ingest FILE --wait --json`` timed from the CLI's start to its report (request,
job, reading, claim-check writes, outbox, events, report). Commands are not signed here
(``LLMOPS_REQUIRE_AUTHORITY=false``): one request, its check is not on the data path.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
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
CLI = [sys.executable, "-m", "shared.cli.main"]
MACHINE = "2-core x86_64, 24 GiB, no GPU"
DURABLE_LOG = True  # the default stack; --memory-log: one memory broker


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


def end_to_end(path: Path, work: Path, runs: int) -> tuple[float, dict[str, int], float]:
    """Seconds of the fastest ``llmops ingest FILE --wait --json`` (each run a new dataset
    on the same service), its report's counts, and the CPU seconds of one run (service +
    CLI process, mean; the broker's not counted)."""
    from tests.support.stack import ROOT as REPO
    from tests.support.stack import ServiceProcess, embedded_log, free_port

    data_dir = work / "data"
    env = {
        "LLMOPS_KAFKA_BOOTSTRAP": "",
        "LLMOPS_DATA_DIR": str(data_dir),
        "LLMOPS_REQUIRE_AUTHORITY": "false",
        "LLMOPS_INGESTION_ALLOWED_ROOTS": str(path.parent),
        "LLMOPS_ADMIN_PORT": str(free_port()),
        "OTEL_TRACES_EXPORTER": "none",
    }
    best = float("inf")
    counts: dict[str, int] = {}
    cli_cpu = 0.0
    # the embedded log as `llmops up` runs it by default (durable store; --memory-log: memory)
    with embedded_log(work / "stack", durable=DURABLE_LOG) as kafka:
        env.update(kafka)
        service = ServiceProcess("services.ingestion", env, work / "ingestion.log").start(240)
        try:
            assert service.proc is not None
            cpu_before = _cpu_s(service.proc.pid)
            for run in range(runs):
                started = time.perf_counter()
                children = resource.getrusage(resource.RUSAGE_CHILDREN)
                done = subprocess.run(
                    [
                        *CLI,
                        "ingest",
                        str(path),
                        "--dataset",
                        f"bench-e2e-{run}",
                        "--wait",
                        "--json",
                    ],
                    cwd=REPO,
                    env={**os.environ, **env, "PYTHONPATH": str(REPO)},
                    capture_output=True,
                    text=True,
                    timeout=900,
                    check=False,
                )
                elapsed = time.perf_counter() - started
                after = resource.getrusage(resource.RUSAGE_CHILDREN)
                cli_cpu += after.ru_utime + after.ru_stime - children.ru_utime - children.ru_stime
                if done.returncode != 0:
                    raise RuntimeError(f"llmops ingest failed: {done.stderr[-2000:]}")
                report = json.loads(done.stdout.strip().splitlines()[-1])
                counts = {k: report[k] for k in ("read", "emitted", "batches")}
                print(f"  end to end run {run + 1}: {elapsed:.2f} s {counts}", flush=True)
                best = min(best, elapsed)
            service_cpu = _cpu_s(service.proc.pid) - cpu_before
        finally:
            service.stop()
    return best, counts, (service_cpu + cli_cpu) / runs


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def best_of(runs: int, fn, *args):  # type: ignore[no-untyped-def]
    results = [fn(*args) for _ in range(runs)]
    return min(results, key=lambda r: r[0])


def main(e2e_runs: int) -> None:
    docs: list[Doc] = generate(6000, seed=2026)
    config = DedupConfig()
    e2e: tuple[float, dict[str, int], float] | None = None
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "corpus.jsonl"
        path.write_text("".join(json.dumps({"text": d.text}) + "\n" for d in docs))
        size_mb = path.stat().st_size / 1e6
        read_s = best_of(3, lambda: (time.perf_counter(), rows_of(path)))
        del read_s
        ours_s, ours_kept = best_of(3, ours, path, config)
        cpu_started = time.process_time()
        ref_s, ref_kept = best_of(3, reference, path, config)
        ref_cpu = (time.process_time() - cpu_started) / 3
        if e2e_runs:
            work = Path(tmp) / "e2e"
            work.mkdir()
            e2e = end_to_end(path, work, e2e_runs)
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
    if e2e is not None:
        e2e_s, counts, e2e_cpu = e2e
        e2e_rate = len(docs) / e2e_s
        lines += [
            "",
            "## End to end: `llmops ingest FILE --wait` (same file, same run)",
            "",
            (
                "A fresh embedded log as `llmops up` runs it by default (tansu on the durable, "
                "encrypted store; the serving hops' memory broker beside it)"
                if DURABLE_LOG
                else "A fresh embedded memory broker (--memory-log)"
            )
            + ", the ingestion service alone (SQLite, local stores), "
            f"the CLI timed from its start to its report; best of {e2e_runs} "
            f"(each run a new dataset): {e2e_s:.2f} s for {counts.get('read', 0):,} rows read, "
            f"{counts.get('emitted', 0):,} records emitted in {counts.get('batches', 0)} batches.",
            "",
            "| path | records/s | vs reference |",
            "|---|---:|---:|",
            f"| `llmops ingest --wait`, end to end | {e2e_rate:,.0f} "
            f"| {e2e_rate / ref_rate:.2f}x |",
            f"| reference in-process (datasketch) | {ref_rate:,.0f} | 1.00x |",
            "",
            f"ratio: **{e2e_rate / ref_rate:.2f}x** the reference's records/s end to end "
            "(goal >= 1x, issue #14).",
            "",
            f"CPU per run, which other jobs on the machine disturb less than wall time: "
            f"{e2e_cpu:.2f} s end to end (service + CLI process, mean; the broker's and "
            f"the log store's not counted) vs {ref_cpu:.2f} s for the reference "
            "(mean of its 3 runs): "
            f"**{ref_cpu / e2e_cpu:.2f}x** its records per CPU second.",
        ]
    text = "\n".join(lines) + "\n"
    print(text)
    out = ROOT / "benchmarks" / "results" / "ingest.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--e2e-runs", type=int, default=2, help="0: no end-to-end runs")
    parser.add_argument(
        "--memory-log",
        action="store_true",
        help="end to end on one memory broker, not the default log",
    )
    args = parser.parse_args()
    DURABLE_LOG = not args.memory_log
    main(args.e2e_runs)
