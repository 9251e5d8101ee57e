"""Near-duplicate defaults by measurement: precision/recall across edit counts and settings.

Corpus: generated ~80-word documents (``services.ingestion.synthetic``) whose near copies
differ by N edited words (substitute, delete or insert), plus hard negatives that share
half of an original. Each setting runs the service's own MinHash + LSH (``LSHIndex``):
a document is compared with the kept ones only, so clusters stay star-shaped (transitive).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import write_result  # noqa: E402
from services.ingestion.domain.dedup import DedupConfig, LSHIndex, lsh_params, signatures  # noqa: E402
from services.ingestion.synthetic import Doc, generate, score  # noqa: E402

EDITS = (1, 2, 3, 5, 8)  # near copies: recall
SIBLINGS = (0.15, 0.2, 0.3)  # other documents of one template: precision
WORDS = 80


def corpus(edits: int, originals: int = 600, seed: int = 5, sibling_rate: float = 0.0) -> list[Doc]:
    return generate(
        originals,
        seed=seed,
        near_per_cluster=(1, 3) if not sibling_rate else (0, 0),
        exact_per_cluster=(0, 0),
        negatives=0.3,
        words=(WORDS - 5, WORDS + 5),
        edit_rate=edits / WORDS,
        siblings=1.0 if sibling_rate else 0.0,
        sibling_rate=sibling_rate,
    )


def run(docs: list[Doc], config: DedupConfig) -> dict[str, float]:
    sigs = signatures([d.text for d in docs], config)
    index = LSHIndex(config)
    kept_of: dict[int, int | None] = {}
    for i, sig in enumerate(sigs):
        near = index.query(sig)
        if near is None:
            index.insert(str(i), sig)
            kept_of[i] = None
        else:
            kept_of[i] = int(near.kept)
    return score(docs, kept_of)


def settings() -> list[DedupConfig]:
    """Bands: the default (recall-weighted) and datasketch's equal weights, for comparison."""
    out = []
    for shingle in (1, 2, 3, 5):
        for threshold in (0.5, 0.6, 0.7, 0.8):
            config = DedupConfig(shingle_size=shingle, threshold=threshold)
            out.append(config)
            equal, _rows = lsh_params(threshold, config.num_perm, fp_weight=0.5)
            if equal != LSHIndex(config).bands:
                out.append(config.model_copy(update={"bands": equal}))
    return out


def main() -> None:
    corpora = {k: corpus(k) for k in EDITS}
    others = {rate: corpus(0, seed=6, sibling_rate=rate) for rate in SIBLINGS}
    header = (
        "| shingle | threshold | bands x rows | "
        + " | ".join(f"recall, {k} words edited" for k in EDITS)
        + " | "
        + " | ".join(f"false dups, {rate:.0%} differ" for rate in SIBLINGS)
        + " |"
    )
    lines = [header, "|" + "---|" * (3 + len(EDITS) + len(SIBLINGS))]
    started = time.perf_counter()
    for config in settings():
        index = LSHIndex(config)
        cells = []
        for k in EDITS:
            q = run(corpora[k], config)
            cells.append(
                f"{q['recall']:.3f}" + ("" if q["precision"] == 1 else f" (P {q['precision']:.3f})")
            )
        for rate in SIBLINGS:
            q = run(others[rate], config)
            cells.append(f"{q['predicted'] / len(others[rate]):.3f}")
        lines.append(
            f"| {config.shingle_size} | {config.threshold} | {index.bands} x {index.rows} | "
            + " | ".join(cells)
            + " |"
        )
        print(lines[-1], flush=True)
    n = len(corpora[3])
    body = (
        f"{n:,} documents per edit count ({WORDS}±5 words, 1-3 near copies per original, "
        "30% hard negatives sharing half an original): recall of the near copies (precision "
        "shown when below 1). Then corpora of 600 originals, each with a sibling whose "
        "given share of words is substituted (a different document from the same template) "
        "and 30% half-shared negatives: the share of documents wrongly dropped as duplicates. "
        f"MinHash 128 permutations ({time.perf_counter() - started:.0f} s)."
        "\n\n" + "\n".join(lines)
    )
    print(write_result("dedup_sweep", "Near-duplicate settings sweep", body))


if __name__ == "__main__":
    main()
