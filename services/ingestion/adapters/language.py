"""Language identification with py3langid (its model ships inside the package)."""

from __future__ import annotations


def detect_language(text: str) -> str:
    import py3langid

    return str(py3langid.classify(text[:2000])[0])
