"""Presidio recognizers built from configuration, and the offline e-mail recognizer."""

from __future__ import annotations

from functools import cache

import tldextract
from presidio_analyzer import Pattern, PatternRecognizer
from presidio_analyzer.predefined_recognizers import EmailRecognizer

from services.anonymization.config import RecognizerSpec


@cache
def offline_tld_extractor() -> tldextract.TLDExtract:
    """The public-suffix snapshot bundled with tldextract: never a network request."""
    return tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None, fallback_to_snapshot=True)


class OfflineEmailRecognizer(EmailRecognizer):
    """Presidio's e-mail recognizer, validating domains against the bundled snapshot."""

    def validate_result(self, pattern_text: str) -> bool:
        return offline_tld_extractor()(pattern_text).fqdn != ""


def luhn_valid(text: str) -> bool:
    digits = [int(ch) for ch in text if ch.isdigit()]
    if len(digits) < 8:
        return False
    total = 0
    for position, digit in enumerate(reversed(digits)):
        doubled = digit * 2 if position % 2 else digit
        total += doubled - 9 if doubled > 9 else doubled
    return total % 10 == 0


def mod97_valid(text: str) -> bool:
    compact = "".join(ch for ch in text if ch.isalnum()).upper()
    if len(compact) < 5:
        return False
    rearranged = compact[4:] + compact[:4]
    try:
        return int("".join(str(int(ch, 36)) for ch in rearranged)) % 97 == 1
    except ValueError:
        return False


class ConfiguredRecognizer(PatternRecognizer):
    """A PatternRecognizer whose matches can be validated by a checksum."""

    def __init__(self, spec: RecognizerSpec, language: str) -> None:
        self.checksum = spec.checksum
        super().__init__(
            supported_entity=spec.entity,
            name=spec.name,
            supported_language=language,
            patterns=[Pattern(p.name, p.regex, p.score) for p in spec.patterns] or None,  # type: ignore[arg-type]
            deny_list=spec.deny_list or None,  # type: ignore[arg-type]
            context=spec.context or None,  # type: ignore[arg-type]
        )

    def validate_result(self, pattern_text: str) -> bool | None:
        if self.checksum == "luhn":
            return luhn_valid(pattern_text)
        if self.checksum == "mod97":
            return mod97_valid(pattern_text)
        return None


def build_recognizers(specs: list[RecognizerSpec], language: str) -> list[PatternRecognizer]:
    return [ConfiguredRecognizer(spec, language) for spec in specs]
