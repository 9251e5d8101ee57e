"""Envelope encryption for the vault (AES-256-GCM), pure functions.

A record's original values are sealed with a fresh data key (DEK). The DEK is wrapped with
the key of every data subject in the record; subject keys are wrapped with the KEK derived
from the master secret. Deleting a subject key (and the wraps of its records) is
crypto-shredding: the sealed copies stay where they are and become unreadable.
"""

from __future__ import annotations

import base64
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

NONCE = 12


class UnreadableError(Exception):
    """The key to open this value is gone (erased) or wrong."""


def new_key() -> bytes:
    return AESGCM.generate_key(bit_length=256)


def seal(key: bytes, plaintext: bytes, aad: bytes = b"") -> bytes:
    nonce = os.urandom(NONCE)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, aad)


def open_sealed(key: bytes, sealed: bytes, aad: bytes = b"") -> bytes:
    try:
        return AESGCM(key).decrypt(sealed[:NONCE], sealed[NONCE:], aad)
    except (InvalidTag, ValueError) as exc:
        raise UnreadableError("cannot open sealed value") from exc


def seal_token(key: bytes, value: str, aad: bytes) -> str:
    """Reversible-encryption operator output: URL-safe text without padding."""
    return base64.urlsafe_b64encode(seal(key, value.encode(), aad)).decode().rstrip("=")


def open_token(key: bytes, token: str, aad: bytes) -> str:
    padded = token + "=" * (-len(token) % 4)
    return open_sealed(key, base64.urlsafe_b64decode(padded), aad).decode()
