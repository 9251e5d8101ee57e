"""Where the repetition filters start to help: legitimate texts lost vs spam caught, by length.

Legitimate texts: support tickets (``services.ingestion.samples``) that name their writer
in the greeting, the e-mail address and the signature, joined into digests of the given
length. Spam: a few phrases repeated. Each length: 300 of each, run through the cleaning
filters with the repetition rules on at every length (``repetition_min_words=1``).
"""

from __future__ import annotations

import random
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import write_result  # noqa: E402
from services.ingestion.domain.cleaning import CleaningConfig, clean  # noqa: E402
from services.ingestion.samples import spam, thread, tickets  # noqa: E402

LENGTHS = (10, 20, 30, 50, 75, 100, 150, 200, 400)
SAMPLES = 300


def main() -> None:
    always = CleaningConfig(repetition_min_words=1)
    no_repetition = CleaningConfig(repetition_min_words=10**9)
    short = tickets(35)
    lost = Counter(clean(t, always).dropped_by for t in short)
    lines = [
        f"35 ordinary tickets ({min(len(t.split()) for t in short)}-"
        f"{max(len(t.split()) for t in short)} words) with the repetition rules on every text: "
        f"{sum(n for rule, n in lost.items() if rule)} dropped ({dict(lost)}); with the "
        f"defaults: {sum(clean(t, CleaningConfig()).dropped_by is not None for t in short)}.",
        "",
        "| words | legitimate texts dropped | spam dropped | spam dropped without the "
        "repetition rules |",
        "|---:|---:|---:|---:|",
    ]
    rng = random.Random(1)
    for words in LENGTHS:
        legit = [thread(rng, words) for _ in range(SAMPLES)]
        junk = [spam(rng, words) for _ in range(SAMPLES)]
        lost_rate = sum(clean(t, always).dropped_by is not None for t in legit) / SAMPLES
        caught = sum(clean(t, always).dropped_by is not None for t in junk) / SAMPLES
        caught_anyway = sum(clean(t, no_repetition).dropped_by is not None for t in junk) / SAMPLES
        lines.append(f"| {words} | {lost_rate:.1%} | {caught:.1%} | {caught_anyway:.1%} |")
        print(lines[-1], flush=True)
    print(write_result("filter_lengths", "Repetition filters by text length", "\n".join(lines)))


if __name__ == "__main__":
    main()
