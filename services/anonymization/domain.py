"""The anonymization itself, pure: operators, tokens, subjects, what goes to the vault."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from services.anonymization import crypto
from services.anonymization.keys import KeyRing
from services.anonymization.known import KnownPolicy, candidates, choose

if TYPE_CHECKING:
    from services.anonymization.ports import KnownValues, PiiEngine, ReplaceFn, SubjectKeys

OPERATORS = ("pseudonym", "mask", "redact", "hash", "encrypt", "keep")


@dataclass(frozen=True)
class Finding:
    """One replaced entity: span in the *anonymized* text (the value stays in memory)."""

    entity_type: str
    start: int
    end: int
    score: float
    operator: str


@dataclass
class Redacted:
    text: str
    findings: list[Finding] = field(default_factory=list)


@dataclass(frozen=True)
class SourceDoc:
    record_id: str
    text: str


@dataclass
class VaultEntry:
    """What the vault keeps for one record: the sealed original under a fresh data key."""

    record_id: str
    dek: bytes
    sealed: bytes
    subjects: list[str]
    entity_types: list[str]


@dataclass
class AnonymizedDoc:
    record_id: str
    text: str
    findings: list[Finding]
    subjects: list[str]
    vault: VaultEntry | None

    def entity_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for finding in self.findings:
            counts[finding.entity_type] = counts.get(finding.entity_type, 0) + 1
        return counts


def record_subject(record_id: str) -> str:
    """Pseudo-subject of a record with PII but no identifying value (e.g. only a city)."""
    return f"record:{record_id}"


class Operators:
    """Per entity type, how a value becomes its replacement."""

    def __init__(
        self,
        keys: KeyRing,
        per_type: Mapping[str, str] | None = None,
        default: str = "pseudonym",
        token_length: int = 16,
    ) -> None:
        unknown = {op for op in [default, *(per_type or {}).values()] if op not in OPERATORS}
        if unknown:
            raise ValueError(f"unknown operator(s) {sorted(unknown)}; known: {OPERATORS}")
        self.keys = keys
        self.per_type = dict(per_type or {})
        self.default = default
        self.token_length = token_length

    def name_for(self, entity_type: str) -> str:
        return self.per_type.get(entity_type, self.default)

    def apply(
        self,
        entity_type: str,
        value: str,
        dek: bytes,
        record_id: str,
        subject_key: bytes | None = None,
    ) -> str:
        """The replacement of ``value``; ``subject_key`` keys tokens of identifying values."""
        operator = self.name_for(entity_type)
        if operator == "pseudonym":
            return self.keys.pseudonym(entity_type, value, self.token_length, subject_key)
        if operator == "mask":
            keep = 4 if len(value) > 8 else 0
            hidden = value[: len(value) - keep]
            return "".join("*" if ch.isalnum() else ch for ch in hidden) + value[len(hidden) :]
        if operator == "redact":
            return f"<{entity_type}>"
        if operator == "hash":
            return f"<{entity_type}#{self.keys.keyed_hash(value, subject_key)[:16]}>"
        if operator == "encrypt":
            return f"<{entity_type}!{crypto.seal_token(dek, value, record_id.encode())}>"
        return value  # keep


SubjectKeyFn = Callable[[str, str], "bytes | None"]


@dataclass
class _Batch:
    """A batch in flight: per document its text so far, findings, values seen, data key."""

    docs: Sequence[SourceDoc]
    texts: list[str]
    findings: list[list[Finding]]
    seen: list[list[tuple[str, str, str]]]
    deks: list[bytes]

    def splice(self, index: int, start: int, end: int, out: str) -> None:
        """Replace ``[start, end)`` of a document; findings after it shift."""
        text = self.texts[index]
        self.texts[index] = text[:start] + out + text[end:]
        delta = len(out) - (end - start)
        self.findings[index] = [
            f
            if f.start < end
            else Finding(f.entity_type, f.start + delta, f.end + delta, f.score, f.operator)
            for f in self.findings[index]
        ]


class Anonymizer:
    """Turns source documents into anonymized documents and vault entries.

    The detector runs on the whole batch at once (spaCy ``nlp.pipe``); texts longer than
    ``max_chunk_chars`` are cut at whitespace into chunks analyzed as separate documents.
    """

    def __init__(
        self,
        engine: PiiEngine,
        operators: Operators,
        subject_entities: Sequence[str],
        *,
        max_chunk_chars: int = 100_000,
        known_policy: KnownPolicy | None = None,
    ) -> None:
        self.engine = engine
        self.operators = operators
        self.subject_entities = set(subject_entities)
        self.max_chunk_chars = max_chunk_chars
        self.known_policy = known_policy or KnownPolicy()

    def run(
        self,
        docs: Sequence[SourceDoc],
        subject_keys: SubjectKeys | None = None,
        known: KnownValues | None = None,
    ) -> list[AnonymizedDoc]:
        """Anonymize a batch. With ``subject_keys`` (the vault), identifying values are
        tokenized with their subject's own key, so erasure also stops recomputation. With
        ``known``, identifying values detected with confidence anywhere (this batch or
        before) are also replaced where the detector missed them."""
        deks = [crypto.new_key() for _ in docs]
        cache: dict[str, bytes] = {}

        def subject_key(entity_type: str, value: str) -> bytes | None:
            if subject_keys is None or entity_type not in self.subject_entities:
                return None
            ref = self.operators.keys.subject_ref(value)
            if ref not in cache:
                cache.update(subject_keys.subject_keys({ref}))
            return cache[ref]

        seen: list[list[tuple[str, str, str]]] = [[] for _ in docs]
        pieces: list[tuple[int, str]] = []
        for index, doc in enumerate(docs):
            pieces += [(index, chunk) for chunk in split_text(doc.text, self.max_chunk_chars)]

        def replacer(index: int) -> ReplaceFn:
            doc = docs[index]

            def replace(entity_type: str, value: str) -> str:
                out = self.operators.apply(
                    entity_type,
                    value,
                    deks[index],
                    doc.record_id,
                    subject_key(entity_type, value),
                )
                seen[index].append((entity_type, value, out))
                return out

            return replace

        redacted = self.engine.process(
            [chunk for _, chunk in pieces], [replacer(index) for index, _ in pieces]
        )
        texts: list[list[str]] = [[] for _ in docs]
        findings: list[list[Finding]] = [[] for _ in docs]
        for (index, _), result in zip(pieces, redacted, strict=True):
            offset = sum(len(part) for part in texts[index])
            findings[index] += [
                Finding(
                    f.entity_type,
                    f.start + offset,
                    f.end + offset,
                    f.score,
                    self.operators.name_for(f.entity_type),
                )
                for f in result.findings
            ]
            texts[index].append(result.text)
        batch = _Batch(docs, ["".join(parts) for parts in texts], findings, seen, deks)
        if known is not None and self.known_policy.enabled:
            self._propagate_known(batch, known, subject_key)
        return [
            self._finish(doc, batch.texts[i], findings[i], seen[i], deks[i])
            for i, doc in enumerate(docs)
        ]

    def _propagate_known(
        self, batch: _Batch, known: KnownValues, subject_key: SubjectKeyFn
    ) -> None:
        keys, policy = self.operators.keys, self.known_policy
        learned: dict[str, tuple[str, str]] = {}
        for text, spans, values in zip(batch.texts, batch.findings, batch.seen, strict=True):
            scores = {text[f.start : f.end]: f.score for f in spans}
            for etype, value, out in values:
                if (
                    etype in self.subject_entities
                    and scores.get(out, 0.0) >= policy.min_score
                    and len(value.strip()) >= policy.min_chars
                ):
                    learned[keys.known_value(value)] = (etype, keys.subject_ref(value))
        if learned:
            known.remember(learned)
        per_doc = [list(candidates(text, policy.max_words)) for text in batch.texts]
        hashes = {c.text: keys.known_value(c.text) for cands in per_doc for c in cands}
        hits = known.lookup(set(hashes.values()))
        for index, cands in enumerate(per_doc):
            found = [(c, hits[hashes[c.text]]) for c in cands if hashes[c.text] in hits]
            for cand, etype in choose(found):  # right to left: earlier offsets stay valid
                out = self.operators.apply(
                    etype,
                    cand.text,
                    batch.deks[index],
                    batch.docs[index].record_id,
                    subject_key(etype, cand.text),
                )
                batch.splice(index, cand.start, cand.end, out)
                batch.seen[index].append((etype, cand.text, out))
                batch.findings[index].append(
                    Finding(
                        etype,
                        cand.start,
                        cand.start + len(out),
                        1.0,
                        self.operators.name_for(etype),
                    )
                )
            batch.findings[index].sort(key=lambda f: f.start)

    def _finish(
        self,
        doc: SourceDoc,
        text: str,
        findings: list[Finding],
        values: list[tuple[str, str, str]],
        dek: bytes,
    ) -> AnonymizedDoc:
        if not values:
            return AnonymizedDoc(doc.record_id, text, findings, [], None)
        keys = self.operators.keys
        identifying = [v for etype, v, _ in values if etype in self.subject_entities]
        subjects = sorted({keys.subject_ref(value) for value in identifying}) or [
            record_subject(doc.record_id)
        ]
        original = {
            "text": doc.text,
            "values": [{"type": t, "value": v, "replacement": r} for t, v, r in values],
        }
        sealed = crypto.seal(dek, json.dumps(original).encode(), doc.record_id.encode())
        entry = VaultEntry(doc.record_id, dek, sealed, subjects, sorted({t for t, _, _ in values}))
        return AnonymizedDoc(doc.record_id, text, findings, subjects, entry)


def split_text(text: str, limit: int) -> list[str]:
    """Cut into pieces of at most ``limit`` characters (concatenation = text).

    Cuts prefer a line break, then a sentence end, then any space, in the second half of a
    window, so that an entity rarely straddles two pieces.
    """
    if len(text) <= limit:
        return [text]
    pieces: list[str] = []
    start = 0
    while start < len(text):
        end = min(start + limit, len(text))
        if end < len(text):
            floor = start + limit // 2
            for separator in ("\n", ". ", " "):
                cut = text.rfind(separator, floor, end)
                if cut >= 0:
                    end = cut + len(separator)
                    break
        pieces.append(text[start:end])
        start = end
    return pieces
