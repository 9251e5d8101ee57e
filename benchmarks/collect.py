"""Merge benchmarks/results/*.md (one per benchmark, rewritten by each run) into RESULTS.md."""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).parent
ORDER = ["bus", "telemetry", "ingest", "anonymize", "train", "serving"]

HEADER = """# Benchmark results

Every figure is a ratio against a peer measured in the same run, on the same machine, by the
script named in the section (`make bench` runs them all and rewrites this file). The machine
is shared and noisy: compare ratios, not absolute numbers across runs.
"""


def _as_section(text: str) -> str:
    """Each result file becomes one `##` section; its own headings move one level down."""
    lines = text.strip().splitlines()
    out = []
    for index, line in enumerate(lines):
        level = len(line) - len(line.lstrip("#"))
        depth = 2 if index == 0 else max(3, level + 1)
        out.append("#" * depth + line[level:] if level else line)
    return "\n".join(out)


def main() -> None:
    parts = {p.stem: _as_section(p.read_text()) for p in sorted((HERE / "results").glob("*.md"))}
    names = [n for n in ORDER if n in parts] + sorted(set(parts) - set(ORDER))
    sections = [f"{parts[n]}\n\nScript: `benchmarks/{n}.py`." for n in names]
    (HERE / "RESULTS.md").write_text(HEADER + "\n" + "\n\n".join(sections) + "\n")
    print(f"wrote {HERE / 'RESULTS.md'} ({len(sections)} sections)")


if __name__ == "__main__":
    main()
