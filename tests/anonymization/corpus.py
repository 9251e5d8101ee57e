"""A templated, labeled PII corpus: many formats per entity type, and texts without PII.

Deterministic for a seed. Each document carries its gold spans (start, end, type); the
types are PERSON, EMAIL_ADDRESS, PHONE_NUMBER, CREDIT_CARD, IBAN_CODE, IP_ADDRESS, ADDRESS.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field

FIRST = [
    "Alice",
    "Priya",
    "Mohammed",
    "Jean",
    "Olga",
    "Liam",
    "Chen",
    "Fatima",
    "Lucas",
    "Sofia",
    "Kwame",
    "Hannah",
    "Mateo",
    "Aiko",
    "Noah",
    "Isabella",
    "Omar",
    "Emily",
    "Dmitri",
    "Grace",
    "Rahul",
    "Zoe",
    "Carlos",
    "Ingrid",
]
LAST = [
    "Johnson",
    "Natarajan",
    "Al-Fayed",
    "Dupont",
    "Petrova",
    "O'Brien",
    "Wei",
    "Haddad",
    "Schneider",
    "Rossi",
    "Mensah",
    "Whitaker",
    "Garcia",
    "Tanaka",
    "Fischer",
    "Moreau",
    "Kowalski",
    "Lindqvist",
    "Okafor",
    "Brennan",
    "Sharma",
    "Novak",
    "Silva",
    "Berg",
]
DOMAINS = ["example.com", "mail.co.uk", "corp.example.org", "inbox.de", "post.fr", "uni.edu"]
STREETS = [
    "Baker Street",
    "Evergreen Terrace",
    "Pennsylvania Avenue NW",
    "Oak Lane",
    "Maple Drive",
    "Sunset Boulevard",
    "Kings Road",
    "Elm Court",
    "Harbour Way",
    "Mill Road",
]
CITIES = ["London", "Springfield", "Boston", "Dublin", "Chicago", "Seattle"]

TEMPLATES = [
    "Hi, my name is {PERSON} and you can reach me at {EMAIL_ADDRESS}.",
    "Please call {PERSON} on {PHONE_NUMBER} about the refund.",
    "My card {CREDIT_CARD} was charged twice this month.",
    "Wire the money to IBAN {IBAN_CODE}, account holder {PERSON}.",
    "Ship the replacement to {ADDRESS} before Friday.",
    "Several failed logins came from {IP_ADDRESS} last night.",
    "Contact: {EMAIL_ADDRESS}, phone {PHONE_NUMBER}",
    "{PERSON} lives at {ADDRESS} and asked for a callback.",
    "The server at {IP_ADDRESS} rejected mail for {EMAIL_ADDRESS}.",
    "Dear {PERSON}, your ticket has been closed.",
    "Customer {PERSON} paid with {CREDIT_CARD} and wants a receipt.",
    "I spoke with {PERSON} yesterday; she said to email {EMAIL_ADDRESS}.",
    "Please update my billing address to {ADDRESS}.",
    "Refund to {IBAN_CODE} please, thanks, {PERSON}",
    "Text me at {PHONE_NUMBER} when the courier is near {ADDRESS}.",
    "Our VPN gateway {IP_ADDRESS} blocks {PERSON} since the update.",
    "Regards, {PERSON} ({EMAIL_ADDRESS})",
    "Card ending issue: {CREDIT_CARD}, expiry next year, holder {PERSON}.",
]
CLEAN = [
    "The app crashes when I open the settings page.",
    "Refund was processed in three days, thanks for the quick help.",
    "Version 2.4.1 fixed the login bug for me.",
    "Order 48213 arrived damaged; the box was crushed.",
    "The meeting moved to Tuesday at 10am.",
    "Can you explain how the premium plan differs from the basic one?",
    "The dashboard shows 404 errors after the deploy.",
    "Battery life dropped to 5 hours after the firmware update.",
    "I would like to cancel my subscription at the end of the month.",
    "Great support, the issue is solved.",
    "Please add dark mode to the mobile app.",
    "The invoice total was 129.99 including tax.",
]
STRUCTURED = ("EMAIL_ADDRESS", "PHONE_NUMBER", "CREDIT_CARD", "IBAN_CODE", "IP_ADDRESS")


@dataclass
class Doc:
    text: str
    spans: list[tuple[int, int, str]] = field(default_factory=list)

    def values(self, types: tuple[str, ...] | None = None) -> list[str]:
        return [self.text[s:e] for s, e, t in self.spans if types is None or t in types]


def _luhn_complete(prefix: str, length: int, rng: random.Random) -> str:
    body = prefix + "".join(str(rng.randint(0, 9)) for _ in range(length - len(prefix) - 1))
    total = 0
    for position, ch in enumerate(reversed(body + "0")):
        digit = int(ch) * (2 if position % 2 else 1)
        total += digit - 9 if digit > 9 else digit
    return body + str((10 - total % 10) % 10)


def _iban(country: str, bban: str) -> str:
    rearranged = bban + country + "00"
    number = int("".join(str(int(ch, 36)) for ch in rearranged))
    return f"{country}{98 - number % 97:02d}{bban}"


def _value(kind: str, rng: random.Random, person: str) -> str:
    first, last = person.split(" ", 1)
    if kind == "PERSON":
        return person
    if kind == "EMAIL_ADDRESS":
        local = (
            rng.choice(
                [
                    f"{first}.{last}",
                    f"{first[0]}{last}{rng.randint(1, 99)}",
                    f"{first}_{last}+support",
                ]
            )
            .lower()
            .replace("'", "")
        )
        return f"{local}@{rng.choice(DOMAINS)}"
    if kind == "PHONE_NUMBER":
        a, b, c = rng.randint(201, 989), rng.randint(200, 999), rng.randint(1000, 9999)
        return rng.choice(
            [
                f"+1 ({a}) {b}-{c}",
                f"{a}-{b}-{c}",
                f"({a}) {b}-{c}",
                f"+44 20 7946 {c}",
                f"020 7946 {c}",
                f"+49 30 {b} {c}",
                f"+33 1 42 68 {c // 100:02d} {c % 100:02d}",
                f"{a}.{b}.{c}",
            ]
        )
    if kind == "CREDIT_CARD":
        number = rng.choice(
            [
                _luhn_complete("4", 16, rng),
                _luhn_complete("53", 16, rng),
                _luhn_complete("37", 15, rng),
            ]
        )
        if len(number) == 15:
            return rng.choice([number, f"{number[:4]} {number[4:10]} {number[10:]}"])
        groups = [number[i : i + 4] for i in range(0, 16, 4)]
        return rng.choice([" ".join(groups), "-".join(groups), number])
    if kind == "IBAN_CODE":
        country, bban = rng.choice(
            [
                ("DE", "".join(str(rng.randint(0, 9)) for _ in range(18))),
                ("GB", "NWBK" + "".join(str(rng.randint(0, 9)) for _ in range(14))),
                ("FR", "".join(str(rng.randint(0, 9)) for _ in range(23))),
                ("NL", "ABNA" + "".join(str(rng.randint(0, 9)) for _ in range(10))),
            ]
        )
        iban = _iban(country, bban)
        return rng.choice([iban, " ".join(iban[i : i + 4] for i in range(0, len(iban), 4))])
    if kind == "IP_ADDRESS":
        return rng.choice(
            [
                f"192.168.{rng.randint(0, 255)}.{rng.randint(1, 254)}",
                f"10.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}",
                f"203.0.113.{rng.randint(1, 254)}",
                f"2001:db8:{rng.randint(1, 9999):x}::{rng.randint(1, 999):x}",
            ]
        )
    number = f"{rng.randint(1, 9999)}{rng.choice(['', '', 'B'])}"
    street = f"{number} {rng.choice(STREETS)}"
    return rng.choice([street, f"{street}, {rng.choice(CITIES)}"])


def generate(count: int, seed: int = 7, clean_share: float = 0.2) -> list[Doc]:
    rng = random.Random(seed)
    docs = []
    for _ in range(count):
        if rng.random() < clean_share:
            docs.append(Doc(rng.choice(CLEAN)))
            continue
        person = f"{rng.choice(FIRST)} {rng.choice(LAST)}"
        template = rng.choice(TEMPLATES)
        text, spans, cursor = "", [], 0
        for match in re.finditer(r"\{(\w+)\}", template):
            text += template[cursor : match.start()]
            value = _value(match.group(1), rng, person)
            spans.append((len(text), len(text) + len(value), match.group(1)))
            text += value
            cursor = match.end()
        docs.append(Doc(text + template[cursor:], spans))
    return docs
