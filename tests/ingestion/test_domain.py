"""Unit tier: cleaning steps and filters, dedup quality, readers on every bad input."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from services.ingestion.adapters.readers import detect_format, read_source
from services.ingestion.domain.cleaning import CleaningConfig, clean
from services.ingestion.domain.dedup import (
    DedupConfig,
    LSHIndex,
    fingerprint,
    shingles,
    signatures,
)
from services.ingestion.domain.pipeline import (
    MAX_REPORTED_ERRORS,
    Pipeline,
    RawRow,
    Report,
    record_id,
)
from services.ingestion.samples import spam, thread, tickets
from services.ingestion.synthetic import generate, score
from shared.events.ingest import FieldMapping, SourceSpec
from tests.ingestion.files import EXPECTED_ERRORS, EXPECTED_KEPT, write_bad_inputs

pytestmark = pytest.mark.unit
REQUEST = "00000000-0000-0000-0000-0000000000aa"


def make_pipeline(dedup: DedupConfig | None = None, **cleaning: object) -> Pipeline:
    dedup = dedup or DedupConfig()
    return Pipeline(
        request_id=REQUEST,
        mapping=FieldMapping(metadata_fields=["lang"]),
        cleaning=CleaningConfig.with_overrides(CleaningConfig(), dict(cleaning)),
        dedup=dedup,
        exact_index={},
        lsh=LSHIndex(dedup),
        fingerprint_key=b"test-key",
    )


def test_normalization_steps_are_counted() -> None:
    result = clean("Cafe\u0301\x07  ok\t\tthere\n\n\n\nend", CleaningConfig())
    assert result.text == "Caf\u00e9 ok there\n\nend"
    assert result.changed == ["nfc", "control", "whitespace"]
    assert result.dropped_by is None


def test_html_stripping_is_optional() -> None:
    raw = "<p>Hello &amp; <b>welcome</b></p><script>x()</script>"
    assert clean(raw, CleaningConfig()).text == raw
    assert clean(raw, CleaningConfig(strip_html=True)).text == "Hello & welcome"


@pytest.mark.parametrize(
    ("text", "overrides", "dropped_by"),
    [
        ("short", {"min_chars": 10}, "too_short"),
        ("word " * 50, {"max_chars": 100}, "too_long"),
        ("same line\nsame line\nsame line\nother", {"repetition_min_words": 1}, "duplicate_lines"),
        (" ".join(["buy now"] * 30), {"repetition_min_words": 1}, "top_2gram"),
        (" ".join(["buy cheap watches now"] * 30), {}, "top_2gram"),
        ("#### $$$$ %%%% &&&& ok", {}, "symbol_ratio"),
        ("Ceci est une phrase écrite en français.", {"languages": ["en"]}, "language"),
    ],
)
def test_quality_filters(text: str, overrides: dict[str, object], dropped_by: str) -> None:
    from services.ingestion.adapters.language import detect_language

    config = CleaningConfig.with_overrides(CleaningConfig(), overrides)
    assert clean(text, config, detect_language).dropped_by == dropped_by


def test_bad_cleaning_overrides_are_named() -> None:
    with pytest.raises(ValueError, match="min_chars") as info:
        CleaningConfig.with_overrides(CleaningConfig(), {"min_chars": -1, "nope": 1})
    assert "nope" in str(info.value)


def run_corpus(docs: list, chunk: int = 700) -> tuple[dict[int, int | None], Report]:
    pipeline = make_pipeline()
    rows = [RawRow("corpus", i + 1, fields={"text": d.text}) for i, d in enumerate(docs)]
    index = {record_id(REQUEST, "corpus", i + 1): i for i in range(len(docs))}
    report = Report()
    kept_of: dict[int, int | None] = {}
    for start in range(0, len(rows), chunk):  # across chunks, like the service
        for entry in pipeline.process(rows[start : start + chunk], report).lineage:
            dup = entry.duplicate_of
            kept_of[index[entry.record_id]] = None if dup is None else index[dup]
    return kept_of, report


def test_near_duplicate_precision_and_recall_on_generated_corpus() -> None:
    docs = generate(1500, seed=11, exact_per_cluster=(0, 0))
    kept_of, report = run_corpus(docs)
    quality = score(docs, kept_of)
    assert quality["expected"] > 1000
    assert quality["precision"] >= 0.95, quality
    assert quality["recall"] >= 0.95, quality
    assert report.exact_duplicates == 0


def near_dup_quality(config: DedupConfig, docs: list) -> dict[str, float]:
    index = LSHIndex(config)
    kept_of: dict[int, int | None] = {}
    for i, sig in enumerate(signatures([d.text for d in docs], config)):
        near = index.query(sig)
        kept_of[i] = None if near is None else int(near.kept)
        if near is None:
            index.insert(str(i), sig)
    return score(docs, kept_of)


def test_default_near_dup_settings_reach_the_documented_recall_and_precision() -> None:
    """docs/ingestion.md: ~80-word documents, near copies 3 words apart (the issue's case)."""
    kw = {"words": (75, 85), "exact_per_cluster": (0, 0), "negatives": 0.3}
    copies = generate(600, seed=5, near_per_cluster=(1, 3), edit_rate=3 / 80, **kw)
    quality = near_dup_quality(DedupConfig(), copies)
    assert quality["recall"] >= 0.95, quality
    assert quality["precision"] >= 0.99, quality
    # documents of one template whose words differ by 20%: kept apart
    others = generate(600, seed=6, near_per_cluster=(0, 0), siblings=1.0, sibling_rate=0.2, **kw)
    assert near_dup_quality(DedupConfig(), others)["predicted"] <= 0.005 * len(others)
    # today's defaults before the change found fewer (0.70): the test can tell them apart
    old = DedupConfig(threshold=0.7, bands=14)
    assert near_dup_quality(old, copies)["recall"] < 0.8


def test_exact_copies_are_exact_duplicates() -> None:
    docs = generate(300, seed=3, near_per_cluster=(0, 0), exact_per_cluster=(1, 2))
    kept_of, report = run_corpus(docs)
    assert score(docs, kept_of)["f1"] == 1.0
    assert report.exact_duplicates == len(docs) - 300 - sum(d.kind == "negative" for d in docs)
    assert report.near_duplicates == 0


def test_dedup_spans_chunks_and_reloaded_signatures() -> None:
    config = DedupConfig()
    text = "one two three four five six seven eight nine ten eleven twelve thirteen"
    (sig,) = signatures([text], config)
    reloaded = LSHIndex(config)
    reloaded.insert("old", np.frombuffer(sig.tobytes(), dtype=np.uint32))
    near = reloaded.query(signatures([text.replace("seven", "SEVEN!")], config)[0])
    assert near is not None
    assert near.kept == "old"
    assert reloaded.remove("old")
    assert reloaded.query(sig) is None


def test_fingerprint_is_keyed_and_normalized() -> None:
    assert fingerprint("Hello  World", b"k1") == fingerprint("hello world", b"k1")
    assert fingerprint("hello world", b"k1") != fingerprint("hello world", b"k2")


def test_record_ids_are_stable_and_say_nothing_about_text() -> None:
    assert record_id(REQUEST, "a.jsonl", 3) == record_id(REQUEST, "a.jsonl", 3)
    assert record_id(REQUEST, "a.jsonl", 3) != record_id(REQUEST, "a.jsonl", 4)


def test_formats_by_extension() -> None:
    assert [detect_format(p) for p in ("a.jsonl", "b.csv.gz", "c.parquet", "d.txt", "e")] == [
        "jsonl",
        "csv",
        "parquet",
        "text",
        "text",
    ]


def test_every_bad_input_is_reported_and_every_good_record_kept(tmp_path: Path) -> None:
    files = write_bad_inputs(tmp_path, huge_mb=5)
    pipeline = make_pipeline()
    report = Report()
    kept = []
    for key in ("mixed", "empty", "binary", "ragged", "missing"):
        rows = list(read_source(SourceSpec(uri=str(files[key])), max_line_bytes=4 << 20))
        kept += [r.text for r in pipeline.process(rows, report).kept]
    assert kept == EXPECTED_KEPT
    got = [(e.source, e.line, e.reason) for e in report.errors]
    for key, line, words in EXPECTED_ERRORS:
        assert any(
            s == str(files[key]) and ln == line and words in reason for s, ln, reason in got
        ), f"no error for {key} line {line} ({words}) in {got}"
    assert len(got) == len(EXPECTED_ERRORS)
    assert (report.read, report.malformed, report.exact_duplicates) == (17, 8, 2)


def test_text_csv_parquet_and_mapping(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "docs.txt").write_text("first line of text\n\nsecond line of text\n")
    pq.write_table(
        pa.table({"body": ["a parquet document", None], "lang": ["en", "fr"], "n": [1, 2]}),
        tmp_path / "rows.parquet",
    )
    lines = list(read_source(SourceSpec(uri=str(tmp_path / "*.txt")), max_line_bytes=1024))
    assert [(r.line, r.text) for r in lines] == [
        (1, "first line of text"),
        (3, "second line of text"),
    ]
    whole = list(
        read_source(
            SourceSpec(uri=str(tmp_path / "docs.txt"), text_mode="file"), max_line_bytes=1024
        )
    )
    assert len(whole) == 1
    rows = list(read_source(SourceSpec(uri=str(tmp_path / "rows.parquet")), max_line_bytes=1024))
    pipeline = Pipeline(
        request_id=REQUEST,
        mapping=FieldMapping(text_field="body", id_field="n", metadata_fields=["lang"]),
        cleaning=CleaningConfig(),
        dedup=DedupConfig(),
        exact_index={},
        lsh=LSHIndex(DedupConfig()),
        fingerprint_key=b"k",
    )
    report = Report()
    (record,) = pipeline.process(rows, report).kept
    assert (record.text, record.source_id, record.metadata) == (
        "a parquet document",
        "1",
        {"lang": "en"},
    )
    assert report.errors[0].reason == "text field 'body' is null, not a string"


def test_reading_streams_with_flat_memory(tmp_path: Path) -> None:
    import tracemalloc

    big = tmp_path / "big.jsonl"
    line = b'{"text": "' + b"word " * 20 + b'"}\n'
    with big.open("wb") as out:
        for _ in range(200):
            out.write(line * 1000)  # 200k lines, ~23 MB
    tracemalloc.start()
    try:
        count = sum(1 for _ in read_source(SourceSpec(uri=str(big)), max_line_bytes=1 << 20))
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == 200_000
    assert peak < 8 * 1024 * 1024  # a file this size read whole would be ~3x its size


def test_short_realistic_tickets_pass_the_default_filters_untouched() -> None:
    texts = tickets(35)
    assert sum("@example.com" in t for t in texts) >= 20  # names recur in the address
    # near dedup off: the sample tickets are filled into few templates (filters under test)
    pipeline = make_pipeline(DedupConfig(near=False))
    rows = [RawRow("tickets.jsonl", i + 1, fields={"text": t}) for i, t in enumerate(texts)]
    report = Report()
    kept = pipeline.process(rows, report).kept
    assert [r.text for r in kept] == texts
    assert report.filtered == {}
    # the same tickets with the repetition rules on every length: the symptom
    always = CleaningConfig(repetition_min_words=1)
    assert sum(clean(t, always).dropped_by is not None for t in texts) >= 9


def test_a_long_repetitive_spam_document_is_still_dropped() -> None:
    rng = random.Random(3)
    for words in (100, 200, 1000):
        assert clean(spam(rng, words), CleaningConfig()).dropped_by == "top_2gram"
    assert clean(thread(rng, 400), CleaningConfig()).dropped_by is None


def test_every_filtered_record_is_listed_with_its_rule_capped_with_counts() -> None:
    pipeline = make_pipeline(min_chars=10)
    rows = [RawRow("a.jsonl", i, fields={"text": f"tiny{i}"}) for i in range(1, 151)]
    rows.insert(0, RawRow("a.jsonl", 0, fields={"text": "a ticket long enough"}))
    report = Report()
    pipeline.process(rows, report)
    assert report.filtered == {"too_short": 150}
    assert len(report.filtered_records) == MAX_REPORTED_ERRORS
    first = report.filtered_records[0]
    assert (first.source, first.line, first.rule) == ("a.jsonl", 1, "too_short")
    assert Report.from_dict(report.to_dict()).filtered_records == report.filtered_records


def _jaccard(a: str, b: str) -> float:
    left, right = set(shingles(a, 3)), set(shingles(b, 3))
    return len(left & right) / len(left | right)


def test_near_duplicate_clusters_are_transitive_no_chains() -> None:
    """docs/ingestion.md: a record is compared with kept records only, so every duplicate
    points at a kept record, and A ~ B ~ C with A and C far apart keeps C."""
    rng = random.Random(8)
    vocabulary = [f"w{i}" for i in range(400)]
    a = [rng.choice(vocabulary) for _ in range(80)]
    b = list(a)
    for position in range(5, 80, 16):  # 5 words apart from a
        b[position] = f"b{position}"
    c = list(b)
    for position in range(13, 80, 16):  # 5 more words apart from b, 10 from a
        c[position] = f"c{position}"
    texts = [" ".join(words) for words in (a, b, c)]
    threshold = DedupConfig().threshold
    assert _jaccard(texts[0], texts[1]) >= threshold
    assert _jaccard(texts[1], texts[2]) >= threshold
    assert _jaccard(texts[0], texts[2]) < threshold
    pipeline = make_pipeline()
    rows = [RawRow("chain", i + 1, fields={"text": t}) for i, t in enumerate(texts)]
    lineage = pipeline.process(rows, Report()).lineage
    assert [e.status for e in lineage] == ["kept", "near_duplicate", "kept"]
    assert lineage[1].duplicate_of == lineage[0].record_id  # b joins a's cluster, c does not

    # and on the generated corpus: every duplicate points at a kept record
    kept_of, _report = run_corpus(generate(600, seed=12))
    assert any(target is not None for target in kept_of.values())
    assert all(kept_of[target] is None for target in kept_of.values() if target is not None)
