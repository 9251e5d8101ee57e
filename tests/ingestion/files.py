"""Input files with every kind of bad input the issue names, and what they must give."""

from __future__ import annotations

import json
from pathlib import Path

GOOD = [
    "The first good record arrives with a byte order mark in front of it.",
    "A second good record follows the first one without any trouble.",
    "The third good record comes after a line of many megabytes.",
    "Support ticket: the printer on floor two keeps jamming every morning.",
    "Support ticket: my password reset email never arrived in the inbox.",
]
CSV_GOOD = ["The first CSV row is fine and complete.", "The fourth CSV row is fine as well."]


def write_bad_inputs(directory: Path, *, huge_mb: int = 30) -> dict[str, Path]:
    """A JSONL file mixing good lines with every bad line, plus bad whole files."""
    directory.mkdir(parents=True, exist_ok=True)
    mixed = directory / "mixed.jsonl"
    with mixed.open("wb") as out:
        out.write(b"\xef\xbb\xbf" + json.dumps({"text": GOOD[0], "id": "t1"}).encode() + b"\n")
        out.write(json.dumps({"text": GOOD[1], "id": "t2"}).encode() + b"\n")
        out.write(b'{"text": "an unterminated string\n')  # 3: malformed JSON
        out.write(b'{"text": "caf\xe9 in latin-1"}\n')  # 4: not UTF-8
        out.write(b'{"body": "the text is under another name"}\n')  # 5: missing text field
        out.write(b'{"text": "   "}\n')  # 6: empty text
        out.write(b'{"text": "' + b"y" * (huge_mb * 1024 * 1024) + b'"}\n')  # 7: huge line
        out.write(json.dumps({"text": GOOD[2]}).encode() + b"\n")  # 8
        out.write(b"[1, 2, 3]\n")  # 9: not an object
        out.write(json.dumps({"text": GOOD[1], "id": "t2-again"}).encode() + b"\n")  # 10: dup
        out.write(json.dumps({"text": GOOD[3]}).encode() + b"\n")  # 11
        out.write(json.dumps({"text": GOOD[4].upper()}).encode() + b"\n")  # 12
        out.write(json.dumps({"text": GOOD[4]}).encode() + b"\n")  # 13: exact dup (case)
    (directory / "empty.jsonl").write_bytes(b"")
    (directory / "binary.jsonl").write_bytes(bytes(range(256)) * 64)
    (directory / "ragged.csv").write_text(
        f"id,text\n1,{CSV_GOOD[0]}\n2,too,many,fields\n3\n4,{CSV_GOOD[1]}\n"
    )
    return {
        "mixed": mixed,
        "empty": directory / "empty.jsonl",
        "binary": directory / "binary.jsonl",
        "ragged": directory / "ragged.csv",
        "missing": directory / "does-not-exist.jsonl",
    }


# (file key, line, words the reason must contain)
EXPECTED_ERRORS = [
    ("mixed", 1, "byte order mark"),
    ("mixed", 3, "malformed JSON"),
    ("mixed", 4, "not valid UTF-8"),
    ("mixed", 5, "missing text field 'text'"),
    ("mixed", 6, "empty text"),
    ("mixed", 7, "over the"),
    ("mixed", 9, "not an object"),
    ("empty", None, "empty file"),
    ("binary", None, "binary file"),
    ("ragged", 3, "row has 4 fields, the header has 2"),
    ("ragged", 4, "row has 1 field, the header has 2"),
    ("missing", None, "path does not exist"),
]
EXPECTED_KEPT = [GOOD[0], GOOD[1], GOOD[2], GOOD[3], GOOD[4].upper(), *CSV_GOOD]
