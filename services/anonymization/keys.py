"""The platform's pseudonym key and everything derived from it (pure functions).

One master secret (``LLMOPS_PSEUDONYM_KEY`` or ``<data_dir>/secrets/pseudonym.key``) yields
separate keys for subject references, pseudonym tokens and the key-encryption key of the
vault, so that knowing a token never helps to compute a subject reference and vice versa.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import unicodedata
from dataclasses import dataclass

_PHONE_LIKE = re.compile(r"^[\d\s()+\-./]+$")
_SPACES = re.compile(r"\s+")


def normalize_identifier(value: str) -> str:
    """The canonical form of an identifier: case, spacing and phone punctuation ignored."""
    text = unicodedata.normalize("NFKC", value).strip()
    if _PHONE_LIKE.match(text) and sum(ch.isdigit() for ch in text) >= 5:
        return "".join(ch for ch in text if ch.isdigit())
    compact = _SPACES.sub(" ", text).casefold()
    if re.fullmatch(r"[a-z]{2}\d{2}[a-z0-9 ]{10,}", compact):  # IBAN written in groups
        return compact.replace(" ", "")
    return compact


@dataclass(frozen=True)
class KeyRing:
    """Purpose-separated keys derived from the master secret with HMAC-SHA256."""

    master: bytes

    def _derive(self, purpose: str) -> bytes:
        return hmac.new(self.master, f"llmops/{purpose}".encode(), hashlib.sha256).digest()

    @property
    def subject_key(self) -> bytes:
        return self._derive("subject-ref")

    @property
    def pseudonym_key(self) -> bytes:
        return self._derive("pseudonym")

    @property
    def hash_key(self) -> bytes:
        return self._derive("keyed-hash")

    @property
    def kek(self) -> bytes:
        """Key-encryption key: wraps the per-subject keys stored in the vault."""
        return self._derive("vault-kek")

    def known_value(self, value: str) -> str:
        """Keyed hash of a detected value for the known-values index (never the value)."""
        digest = hmac.new(
            self._derive("known-value"), normalize_identifier(value).encode(), hashlib.sha256
        )
        return digest.hexdigest()[:32]

    def subject_ref(self, identifier: str) -> str:
        """Keyed hash of an identifier (email, name, phone...): the subject's id."""
        digest = hmac.new(
            self.subject_key, normalize_identifier(identifier).encode(), hashlib.sha256
        )
        return digest.hexdigest()[:32]

    def pseudonym(
        self, entity_type: str, value: str, length: int = 16, subject_key: bytes | None = None
    ) -> str:
        """Consistent token: the same value of the same type gives the same token everywhere.

        With ``subject_key`` (the data subject's own key from the vault) the token is derived
        from that key: once the subject is erased (key destroyed) nobody, not even holders of
        the platform key, can recompute it to find the person's records.
        """
        key = _purpose(subject_key, "pseudonym") if subject_key else self.pseudonym_key
        message = f"{entity_type}\x00{normalize_identifier(value)}".encode()
        digest = hmac.new(key, message, hashlib.sha256).hexdigest()
        return f"<{entity_type}_{digest[:length]}>"

    def keyed_hash(self, value: str, subject_key: bytes | None = None) -> str:
        key = _purpose(subject_key, "keyed-hash") if subject_key else self.hash_key
        message = normalize_identifier(value).encode()
        return hmac.new(key, message, hashlib.sha256).hexdigest()


def _purpose(key: bytes, purpose: str) -> bytes:
    return hmac.new(key, f"llmops/{purpose}".encode(), hashlib.sha256).digest()


def parse_master_key(text: str) -> bytes:
    """A master key from its text form: 64 hex digits, or any passphrase (hashed)."""
    text = text.strip()
    if re.fullmatch(r"[0-9a-fA-F]{64}", text):
        return bytes.fromhex(text)
    if len(text) < 16:
        raise ValueError("the pseudonym key must be 64 hex digits or at least 16 characters")
    return hashlib.sha256(text.encode()).digest()
