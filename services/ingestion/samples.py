"""Realistic short support tickets and repetitive spam (filter tests and measurements).

Tickets name their writer two or three times (greeting, e-mail address, signature), as
real ones do: the case where Gopher-style repetition rules misfire on short texts.
"""

from __future__ import annotations

import random

FIRST = ["Alice", "Priya", "Mohammed", "Jean", "Olga", "Liam", "Chen", "Fatima", "Lucas", "Sofia"]
LAST = [
    "Martin",
    "Sharma",
    "Haddad",
    "Dubois",
    "Ivanova",
    "Walsh",
    "Wei",
    "Zahra",
    "Silva",
    "Rossi",
]
OPENINGS = [
    "Hi, this is {first} {last} ({email}).",
    "Hello, my name is {first} {last}, account {email}.",
    "Dear support, I am writing from {email}.",
    "Hi team,",
]
BODIES = [
    "My order {order} has not arrived after {days} days and the tracking page has not moved.",
    "I was charged twice for order {order}, please refund the second payment.",
    "I cannot log in since the password reset yesterday, the link says it has expired.",
    "The app crashes when I open the settings page on my phone.",
    "Please change the delivery address of order {order} to my office.",
    "The invoice for {month} lists a plan I never subscribed to.",
    "Uploading a file larger than {days} MB fails with an error 500.",
    "I would like to cancel my subscription at the end of this month.",
    "The discount code from your newsletter is rejected at checkout.",
    "Two items of order {order} were damaged when the parcel arrived.",
]
DETAILS = [
    "I already tried restarting the app.",
    "This is the second time I write about it.",
    "Please reply to {email}.",
    "You can also call me on +44 20 7946 {phone}.",
    "It worked fine until last week.",
    "I attached a screenshot.",
    "",
]
CLOSINGS = ["Thanks, {first} {last}", "Regards,\n{first} {last}", "Best, {first}", "{first} {last}"]
MONTHS = ["January", "March", "May", "July", "September", "November"]
SPAM = [
    "buy cheap watches now",
    "best price guaranteed",
    "click here to win",
    "free shipping today",
]


def ticket(rng: random.Random, writer: tuple[str, str] | None = None) -> str:
    first, last = writer or (rng.choice(FIRST), rng.choice(LAST))
    values = {
        "first": first,
        "last": last,
        "email": f"{first.lower()}.{last.lower()}@example.com",
        "order": f"#{rng.randint(10000, 99999)}",
        "days": rng.randint(2, 30),
        "month": rng.choice(MONTHS),
        "phone": rng.randint(1000, 9999),
    }
    parts = [rng.choice(OPENINGS), rng.choice(BODIES), rng.choice(DETAILS), rng.choice(CLOSINGS)]
    return "\n".join(p.format(**values) for p in parts if p)


def tickets(count: int = 35, seed: int = 8) -> list[str]:
    rng = random.Random(seed)
    return [ticket(rng) for _ in range(count)]


def thread(rng: random.Random, words: int) -> str:
    """A long legitimate text of about ``words``: a digest of tickets, a paragraph each."""
    parts: list[str] = []
    while sum(len(p.split()) for p in parts) < words:
        parts.append(" ".join(ticket(rng).split("\n")))
    return "\n\n".join(parts)


def spam(rng: random.Random, words: int) -> str:
    """A repetitive spam text of about ``words`` words (a few phrases, over and over)."""
    phrases = rng.sample(SPAM, 2)
    out: list[str] = []
    while len(out) < words:
        out += rng.choice(phrases).split()
    return " ".join(out[:words]).capitalize() + "!"
