"""A small PiiEngine fake: finds known values and e-mails, no NLP model needed."""

from __future__ import annotations

import re
from collections.abc import Sequence

from services.anonymization.domain import Finding, Redacted
from services.anonymization.ports import ReplaceFn

EMAIL = re.compile(r"[\w.+-]+@[\w-]+\.[\w.]+")


class FakeEngine:
    def __init__(self, known: dict[str, str] | None = None) -> None:
        self.known = known or {}
        self.batches: list[int] = []

    def _spans(self, text: str) -> list[tuple[int, int, str]]:
        spans = [(m.start(), m.end(), "EMAIL_ADDRESS") for m in EMAIL.finditer(text)]
        for value, entity in self.known.items():
            start = text.find(value)
            while start >= 0:
                spans.append((start, start + len(value), entity))
                start = text.find(value, start + 1)
        return sorted(spans)

    def process(self, texts: Sequence[str], replace: Sequence[ReplaceFn]) -> list[Redacted]:
        self.batches.append(len(texts))
        out = []
        for text, replace_fn in zip(texts, replace, strict=True):
            pieces, findings, cursor = [], [], 0
            for start, end, entity in self._spans(text):
                if start < cursor:
                    continue
                pieces.append(text[cursor:start])
                position = sum(map(len, pieces))
                token = replace_fn(entity, text[start:end])
                pieces.append(token)
                findings.append(Finding(entity, position, position + len(token), 0.9, "custom"))
                cursor = end
            pieces.append(text[cursor:])
            out.append(Redacted("".join(pieces), findings))
        return out
