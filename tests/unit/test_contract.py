from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel, Field

from shared.contract import check, incompatibilities, signature
from shared.events import Event

pytestmark = pytest.mark.unit
PROTO = Path(__file__).resolve().parents[2] / "proto"


def test_proto_is_generated_from_the_current_models() -> None:
    assert check(PROTO) == []


class Address(BaseModel):
    city: str = Field(description="city")


class V1(Event):
    name: str = Field(description="name")
    count: int = Field(0, description="count")
    address: Address | None = Field(None, description="where")


class AddsOptional(Event):
    name: str = Field(description="name")
    count: int = Field(0, description="count")
    address: Address | None = Field(None, description="where")
    note: str | None = Field(None, description="new and optional")


class Removes(Event):
    name: str = Field(description="name")
    address: Address | None = Field(None, description="where")


class Retypes(Event):
    name: str = Field(description="name")
    count: str = Field("0", description="count, now a string")
    address: Address | None = Field(None, description="where")


class AddsRequired(Event):
    name: str = Field(description="name")
    count: int = Field(0, description="count")
    address: Address | None = Field(None, description="where")
    owner: str = Field(description="new and required")


class NestedAddress(BaseModel):
    town: str = Field(description="renamed")


class RenamesNested(Event):
    name: str = Field(description="name")
    count: int = Field(0, description="count")
    address: NestedAddress | None = Field(None, description="where")


def test_additive_change_is_compatible() -> None:
    assert incompatibilities(signature(V1), signature(AddsOptional)) == []


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        (Removes, "count: removed or renamed"),
        (Retypes, "count: type changed"),
        (AddsRequired, "owner: new required field"),
        (RenamesNested, "address.city: removed or renamed"),
    ],
)
def test_breaking_changes_are_found(model: type[Event], expected: str) -> None:
    problems = incompatibilities(signature(V1), signature(model))
    assert any(expected in p for p in problems), problems
