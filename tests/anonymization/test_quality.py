"""PII detection quality against vanilla Presidio with the same spaCy model, same run."""

from __future__ import annotations

import pytest
from presidio_analyzer import BatchAnalyzerEngine

from services.anonymization.adapters.presidio import PresidioEngine, spacy_analyzer
from services.anonymization.config import AnonymizationSettings
from services.anonymization.domain import Anonymizer, Operators, SourceDoc
from services.anonymization.keys import KeyRing
from tests.anonymization.corpus import STRUCTURED, generate
from tests.anonymization.quality import presidio_spans, score, table

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def settings():
    return AnonymizationSettings()


@pytest.fixture(scope="module")
def engine(settings):
    return PresidioEngine(settings)


def test_f2_at_least_vanilla_and_no_structured_value_left(engine, settings):
    docs = generate(400, seed=11)
    texts = [d.text for d in docs]
    ours = score(docs, presidio_spans(engine.analyze(texts)))
    vanilla_engine = BatchAnalyzerEngine(spacy_analyzer(settings.spacy_model))
    vanilla = score(
        docs, presidio_spans(vanilla_engine.analyze_iterator(texts, language="en", batch_size=64))
    )
    print("\n" + table(ours, vanilla))
    assert ours["ALL"].f2 >= vanilla["ALL"].f2
    assert ours["ALL"].recall >= 0.97

    anonymizer = Anonymizer(engine, Operators(KeyRing(b"q" * 32)), settings.subject_entities)
    outputs = anonymizer.run([SourceDoc(str(i), text) for i, text in enumerate(texts)])
    left = [
        (value, out.text)
        for doc, out in zip(docs, outputs, strict=True)
        for value in doc.values(STRUCTURED)
        if value in out.text
    ]
    assert left == []


def test_texts_without_pii_stay_as_they_are(engine, settings):
    docs = [d for d in generate(200, seed=3, clean_share=1.0)]
    anonymizer = Anonymizer(engine, Operators(KeyRing(b"q" * 32)), settings.subject_entities)
    outputs = anonymizer.run([SourceDoc(str(i), d.text) for i, d in enumerate(docs)])
    changed = [out.text for doc, out in zip(docs, outputs, strict=True) if out.text != doc.text]
    assert len(changed) <= len(docs) * 0.05, changed[:5]


@pytest.mark.parametrize(
    "text",
    [
        "",
        " ",
        "\x00\x01\x02\xff",
        "é" * 10,
        "Ünïcødé ✓ 🚀" * 3,
        "Je m'appelle Jean Dupont et j'habite à Paris.",
    ],
)
def test_odd_inputs_never_crash(engine, settings, text):
    anonymizer = Anonymizer(engine, Operators(KeyRing(b"q" * 32)), settings.subject_entities)
    [out] = anonymizer.run([SourceDoc("x", text)])
    assert isinstance(out.text, str)
    assert "Jean Dupont" not in out.text


def test_names_caught_once_do_not_leak_from_informal_records(engine, settings):
    """With Presidio itself: a name detected in formal tickets is also replaced in an
    informal one where spaCy's NER misses it (lower case, chat style)."""
    from tests.anonymization.test_unit import DictKeys, DictKnown

    texts = [
        "Grace Whitaker reported that the invoice page is broken.",
        "Ticket from Grace Whitaker: refund still pending.",
        "hey its grace whitaker lol my refund never came",
    ]
    anonymizer = Anonymizer(engine, Operators(KeyRing(b"q" * 32)), settings.subject_entities)
    without = anonymizer.run([SourceDoc(str(i), t) for i, t in enumerate(texts)])
    known = DictKnown()
    with_index = anonymizer.run(
        [SourceDoc(str(i), t) for i, t in enumerate(texts)], DictKeys(), known
    )
    print("\nwithout index:", without[2].text, "\nwith index:   ", with_index[2].text)
    assert all("whitaker" not in doc.text.lower() for doc in with_index)
    assert known.index
