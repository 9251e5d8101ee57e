from __future__ import annotations

import json
import stat

import pytest

from services.anonymization import crypto, lineage
from services.anonymization.adapters.keyfile import key_path, load_keyring
from services.anonymization.adapters.recognizers import luhn_valid, mod97_valid
from services.anonymization.domain import Anonymizer, Operators, SourceDoc, split_text
from services.anonymization.keys import KeyRing, normalize_identifier, parse_master_key
from tests.anonymization.fakes import FakeEngine

pytestmark = pytest.mark.unit

KEYS = KeyRing(b"k" * 32)


def test_identifiers_normalize_case_spacing_and_phone_punctuation():
    assert normalize_identifier("  Alice   JOHNSON ") == "alice johnson"
    assert normalize_identifier("+1 (415) 555-0132") == normalize_identifier("1 415 555 0132")
    assert normalize_identifier("DE89 3704 0044 0532 0130 00") == "de89370400440532013000"


def test_pseudonyms_are_consistent_keyed_and_typed():
    token = KEYS.pseudonym("PERSON", "Alice Johnson")
    assert token == KEYS.pseudonym("PERSON", "alice  johnson")
    assert token.startswith("<PERSON_")
    assert len(token) == len("<PERSON_>") + 16  # 64 bits: no collisions at corpus scale
    assert token != KeyRing(b"x" * 32).pseudonym("PERSON", "Alice Johnson")  # keyed
    assert token != KEYS.pseudonym("LOCATION", "Alice Johnson")
    assert KEYS.subject_ref("a@b.io") == KEYS.subject_ref("A@B.IO")
    assert KEYS.subject_ref("a@b.io") not in token


class DictKeys:
    """SubjectKeys fake: each subject's key made on first sight; erase() forgets it."""

    def __init__(self) -> None:
        self.keys: dict[str, bytes] = {}

    def subject_keys(self, subjects: set[str]) -> dict[str, bytes]:
        for subject in subjects - self.keys.keys():
            self.keys[subject] = crypto.new_key()
        return {s: self.keys[s] for s in subjects}


def test_identifying_values_are_tokenized_with_their_subjects_own_key():
    """Security finding 5: after erasure the pseudonym cannot be recomputed with the platform
    key, so nobody can search the anonymized corpus for the erased person."""
    engine = FakeEngine({"Alice Johnson": "PERSON", "Paris": "LOCATION"})
    anonymizer = Anonymizer(engine, Operators(KEYS), ["PERSON"])
    vault = DictKeys()
    first, second = anonymizer.run(
        [SourceDoc("r1", "Alice Johnson in Paris."), SourceDoc("r2", "Alice Johnson again")],
        vault,
    )
    token = first.text.split(" in ")[0]
    assert token.startswith("<PERSON_")
    assert second.text.startswith(token)  # consistent across records: co-reference kept
    assert token != KEYS.pseudonym("PERSON", "Alice Johnson")  # not the global-key token
    assert "<LOCATION_" in first.text  # non-identifying types keep the global key
    vault.keys.clear()  # erasure destroys the subject key
    [after] = anonymizer.run([SourceDoc("r3", "Alice Johnson")], vault)
    assert after.text != token


class DictKnown:
    """KnownValues fake: an in-memory keyed-hash index."""

    def __init__(self) -> None:
        self.index: dict[str, tuple[str, str]] = {}

    def remember(self, values: dict[str, tuple[str, str]]) -> None:
        self.index.update(values)

    def lookup(self, hashes: set[str]) -> dict[str, str]:
        return {h: self.index[h][0] for h in hashes if h in self.index}


def test_a_confidently_detected_value_is_anonymized_wherever_it_appears_later():
    """Security finding: a name caught in several tickets leaked verbatim from an informal
    one the detector missed ("hey its grace whitaker lol")."""
    engine = FakeEngine({"Grace Whitaker": "PERSON"})  # case-sensitive: misses lower case
    anonymizer = Anonymizer(engine, Operators(KEYS), ["PERSON"])
    known, vault = DictKnown(), DictKeys()
    early, missed = anonymizer.run(
        [
            SourceDoc("r0", "hey its grace whitaker lol, where is my refund"),
            SourceDoc("r1", "Grace Whitaker reported the outage."),
        ],
        vault,
        known,
    )
    token = missed.text.split()[0]
    assert "grace" not in early.text.lower()  # same batch, earlier record: caught too
    assert token in early.text
    assert early.text.endswith(", where is my refund")
    assert [early.text[f.start : f.end] for f in early.findings] == [token]
    assert early.subjects == [KEYS.subject_ref("Grace Whitaker")]
    [later] = anonymizer.run([SourceDoc("r2", "GRACE  WHITAKER called again")], vault, known)
    assert later.text == f"{token} called again"
    assert all("grace" not in key for key in known.index)  # keyed hashes, never plaintext
    # an unrelated word is left alone, and nothing is learned from an absent index
    [plain] = anonymizer.run([SourceDoc("r3", "Grace period ends")], vault, DictKnown())
    assert plain.text == "Grace period ends"


def test_master_key_forms():
    assert parse_master_key("ab" * 32) == bytes.fromhex("ab" * 32)
    assert len(parse_master_key("a long enough passphrase")) == 32
    with pytest.raises(ValueError, match="at least 16"):
        parse_master_key("short")


def test_key_file_is_created_once_with_mode_0600(tmp_path):
    first = load_keyring(None, tmp_path)
    assert stat.S_IMODE(key_path(tmp_path).stat().st_mode) == 0o600
    assert load_keyring(None, tmp_path) == first
    assert load_keyring("cd" * 32, tmp_path) != first


def test_sealed_values_open_only_with_their_key_and_context():
    key = crypto.new_key()
    sealed = crypto.seal(key, b"secret", b"rec-1")
    assert crypto.open_sealed(key, sealed, b"rec-1") == b"secret"
    with pytest.raises(crypto.UnreadableError):
        crypto.open_sealed(crypto.new_key(), sealed, b"rec-1")
    with pytest.raises(crypto.UnreadableError):
        crypto.open_sealed(key, sealed, b"rec-2")
    token = crypto.seal_token(key, "4111", b"r")
    assert crypto.open_token(key, token, b"r") == "4111"


@pytest.mark.parametrize(
    ("operator", "check"),
    [
        ("pseudonym", lambda out: out.startswith("<EMAIL_ADDRESS_")),
        ("redact", lambda out: out == "<EMAIL_ADDRESS>"),
        ("mask", lambda out: out == "***@***e.io"),
        ("hash", lambda out: out.startswith("<EMAIL_ADDRESS#") and len(out) == 32),
        ("encrypt", lambda out: out.startswith("<EMAIL_ADDRESS!")),
        ("keep", lambda out: out == "bob@side.io"),
    ],
)
def test_operators(operator, check):
    operators = Operators(KEYS, {"EMAIL_ADDRESS": operator})
    assert check(operators.apply("EMAIL_ADDRESS", "bob@side.io", crypto.new_key(), "r1"))


def test_unknown_operator_is_refused():
    with pytest.raises(ValueError, match="unknown operator"):
        Operators(KEYS, {"PERSON": "shred"})


def test_anonymizer_batches_seals_originals_and_derives_subjects():
    engine = FakeEngine({"Alice Johnson": "PERSON", "Paris": "LOCATION"})
    anonymizer = Anonymizer(engine, Operators(KEYS), ["PERSON", "EMAIL_ADDRESS"])
    docs = anonymizer.run(
        [
            SourceDoc("r1", "Alice Johnson <alice@example.com> wrote."),
            SourceDoc("r2", "Nothing personal."),
            SourceDoc("r3", "Rain in Paris."),
            SourceDoc("r4", ""),
        ]
    )
    assert engine.batches == [4]
    first = docs[0]
    assert "Alice" not in first.text
    assert "alice@" not in first.text
    assert first.subjects == sorted(
        [KEYS.subject_ref("alice@example.com"), KEYS.subject_ref("Alice Johnson")]
    )
    assert [first.text[f.start : f.end][:8] for f in first.findings] == ["<PERSON_", "<EMAIL_A"]
    assert first.vault is not None
    assert b"Alice" not in first.vault.sealed
    original = json.loads(crypto.open_sealed(first.vault.dek, first.vault.sealed, b"r1"))
    assert original["text"] == "Alice Johnson <alice@example.com> wrote."
    assert docs[1].vault is None
    assert docs[1].text == "Nothing personal."
    assert docs[2].subjects == ["record:r3"]  # PII but nobody identifiable: a record key
    assert docs[3].text == ""


def test_long_text_is_chunked_and_offsets_stay_right():
    text = "Alice Johnson says hi. " * 50
    anonymizer = Anonymizer(
        FakeEngine({"Alice Johnson": "PERSON"}), Operators(KEYS), ["PERSON"], max_chunk_chars=100
    )
    [doc] = anonymizer.run([SourceDoc("big", text)])
    assert "Alice" not in doc.text
    assert len(doc.findings) == 50
    assert all(doc.text[f.start : f.end].startswith("<PERSON_") for f in doc.findings)
    pieces = split_text(text, 100)
    assert "".join(pieces) == text
    assert max(map(len, pieces)) <= 100


def test_checksums():
    assert luhn_valid("4111 1111 1111 1111")
    assert not luhn_valid("4111 1111 1111 1112")
    assert mod97_valid("DE89 3704 0044 0532 0130 00")
    assert not mod97_valid("DE00 3704 0044")


def test_manifest_record_ids_in_any_layout():
    assert lineage.record_ids_in(b'{"records": [{"record_id": "a"}, {"record_id": "b"}]}') == [
        "a",
        "b",
    ]
    assert lineage.record_ids_in(b'{"record_id": "a"}\n{"record_id": "c"}\n') == ["a", "c"]
    assert lineage.record_ids_in(b'{"record_ids": ["x", "y"]}') == ["x", "y"]
    assert lineage.record_ids_in(b"\x00\xff not json") == []
    claims = lineage.nested_claims(b'{"shards": [{"uri": "u", "sha256": "s", "size": 1}]}')
    assert claims == [{"uri": "u", "sha256": "s", "size": 1}]


def test_erasure_report_aggregates_services_and_says_nothing_held(capsys):
    import uuid as _uuid

    from services.anonymization.cli import aggregate, print_report
    from shared.events import ErasureCompleted

    request = _uuid.uuid4()
    answers = {
        "anonymization": ErasureCompleted(
            request_id=request,
            subject_ref="a" * 32,
            service="anonymization",
            found=True,
            records=["r1"],
            dataset_versions=["d@v1"],
            model_versions=["m@2"],
            removed={"subject_keys": 1},
        ),
        "ingestion": ErasureCompleted(
            request_id=request,
            subject_ref="a" * 32,
            service="ingestion",
            found=True,
            records=["r1"],
            removed={"fingerprints": 1},
        ),
    }
    report = {"request_id": str(request), "subject_ref": "a" * 32, **aggregate(answers)}
    assert report["records"] == ["r1"]
    assert set(report["services"]) == {"anonymization", "ingestion"}
    print_report(report)
    assert "m@2" in capsys.readouterr().out
    nothing = {
        "request_id": str(request),
        "subject_ref": "b" * 32,
        **aggregate(
            {
                "anonymization": answers["anonymization"].model_copy(
                    update={
                        "found": False,
                        "records": [],
                        "dataset_versions": [],
                        "model_versions": [],
                    }
                )
            }
        ),
    }
    print_report(nothing)
    assert "nothing held" in capsys.readouterr().out
