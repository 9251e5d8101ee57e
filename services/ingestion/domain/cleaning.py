"""Cleaning: normalization steps (counted when they change a text) and quality filters.

Filters follow the spirit of Gopher (Rae et al. 2021) and FineWeb: duplicate-line
fraction, share of the most frequent word n-gram, symbol ratio, length bounds. The two
repetition rules were made for long web documents: on a short ticket a name that also
appears in the e-mail address and the signature is "the most frequent 2-gram". They apply
from ``repetition_min_words`` words (100 by default; measured in docs/ingestion.md).
"""

from __future__ import annotations

import html
import re
import unicodedata
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u200b\u200e\u200f\ufeff]")
_SPACES = re.compile(r"[ \t\u00a0\u2000-\u200a\u3000]+")
_BLANK_LINES = re.compile(r"\n\s*\n\s*\n+")
_TAG = re.compile(r"<(script|style)\b.*?</\1\s*>|<[^>]{1,2000}>", re.IGNORECASE | re.DOTALL)
_WORD = re.compile(r"\w+")
_SPACE = re.compile(r"\s")
_SYMBOL = re.compile(r"[^\w\s]|_")


class CleaningConfig(BaseModel):
    """Cleaning settings; every request may override any of them."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    nfc: bool = Field(True, description="Unicode NFC normalization.")
    strip_control: bool = Field(True, description="Remove control and zero-width characters.")
    normalize_whitespace: bool = Field(True, description="Collapse runs of spaces and blanks.")
    strip_html: bool = Field(False, description="Remove HTML tags and unescape entities.")
    min_chars: int = Field(1, ge=0, description="Drop texts shorter than this.")
    max_chars: int = Field(100_000, ge=1, description="Drop texts longer than this.")
    min_words: int = Field(1, ge=0, description="Drop texts with fewer words.")
    max_duplicate_line_fraction: float = Field(
        0.3, ge=0, le=1, description="Drop texts whose repeated lines exceed this fraction."
    )
    max_top_ngram_share: dict[int, float] = Field(
        default_factory=lambda: {2: 0.2, 3: 0.18, 4: 0.16},
        description="n -> max share of characters covered by the most frequent word n-gram.",
    )
    repetition_min_words: int = Field(
        100,
        ge=1,
        description="The repetition filters (duplicate lines, top n-gram share) apply to "
        "texts of at least this many words; shorter texts are too short for their statistics.",
    )
    max_symbol_ratio: float = Field(
        0.3, ge=0, le=1, description="Drop texts whose non-alphanumeric share exceeds this."
    )
    languages: list[str] = Field(
        default_factory=list, description="Keep only these ISO 639-1 languages (empty: all)."
    )

    @classmethod
    def with_overrides(cls, base: CleaningConfig, overrides: dict[str, Any]) -> CleaningConfig:
        """Base settings with a request's overrides; ValueError names every bad key."""
        try:
            return cls.model_validate({**base.model_dump(), **overrides})
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
            )
            raise ValueError(f"invalid cleaning settings: {problems}") from None


LanguageDetector = Callable[[str], str]


@dataclass
class CleanResult:
    text: str
    changed: list[str] = field(default_factory=list)
    dropped_by: str | None = None
    words: list[str] | None = None  # the kept text's words (lower case), when the filters read them


def normalize(text: str, config: CleaningConfig) -> tuple[str, list[str]]:
    changed: list[str] = []

    def step(name: str, enabled: bool, fn: Callable[[str], str]) -> None:
        nonlocal text
        if enabled:
            new = fn(text)
            if new != text:
                changed.append(name)
                text = new

    step("html", config.strip_html, lambda t: html.unescape(_TAG.sub(" ", t)))
    step("nfc", config.nfc, lambda t: unicodedata.normalize("NFC", t))
    step("control", config.strip_control, lambda t: _CONTROL.sub("", t.replace("\r\n", "\n")))
    step("whitespace", config.normalize_whitespace, _tidy_whitespace)
    return text, changed


def _tidy_whitespace(text: str) -> str:
    lines = [_SPACES.sub(" ", line).strip() for line in text.split("\n")]
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()


def duplicate_line_fraction(text: str) -> float:
    lines = [line for line in text.split("\n") if line.strip()]
    if len(lines) < 2:
        return 0.0
    counts = Counter(lines)
    return sum(c for c in counts.values() if c > 1) / len(lines)


def top_ngram_share(words: list[str], n: int) -> float:
    """Share of word characters covered by the most frequent n-gram (Gopher)."""
    if len(words) < n:
        return 0.0
    grams = Counter(zip(*(words[i:] for i in range(n)), strict=False))
    gram, count = grams.most_common(1)[0]
    if count < 2:
        return 0.0
    total = sum(len(w) for w in words)
    return sum(len(w) for w in gram) * count / max(total, 1)


def symbol_ratio(text: str) -> float:
    """Share of visible characters that are neither letters nor digits."""
    visible = len(text) - len(_SPACE.findall(text))
    if not visible:
        return 0.0
    return len(_SYMBOL.findall(text)) / visible


def quality_filter(
    text: str, config: CleaningConfig, detect_language: LanguageDetector | None = None
) -> str | None:
    """Name of the first filter that drops ``text``, or None to keep it."""
    return _filter(text, config, detect_language)[0]


def _filter(
    text: str, config: CleaningConfig, detect_language: LanguageDetector | None
) -> tuple[str | None, list[str] | None]:
    """``quality_filter``'s answer, and the words it read (None if it stopped before)."""
    if not text:
        return "empty", None
    if len(text) < config.min_chars:
        return "too_short", None
    if len(text) > config.max_chars:
        return "too_long", None
    words = _WORD.findall(text.lower())
    if len(words) < config.min_words:
        return "too_few_words", words
    if len(words) >= config.repetition_min_words:
        if duplicate_line_fraction(text) > config.max_duplicate_line_fraction:
            return "duplicate_lines", words
        for n, limit in sorted(config.max_top_ngram_share.items()):
            if top_ngram_share(words, n) > limit:
                return f"top_{n}gram", words
    if symbol_ratio(text) > config.max_symbol_ratio:
        return "symbol_ratio", words
    if (
        config.languages
        and detect_language is not None
        and detect_language(text) not in config.languages
    ):
        return "language", words
    return None, words


def clean(
    text: str, config: CleaningConfig, detect_language: LanguageDetector | None = None
) -> CleanResult:
    text, changed = normalize(text, config)
    dropped_by, words = _filter(text, config, detect_language)
    return CleanResult(text, changed, dropped_by, words)
