from __future__ import annotations

import pytest

from services.serving.worker.routing import CHALLENGER, ModelTable, UnknownVersionError, Version

pytestmark = pytest.mark.unit

V1 = Version("m", "1", "/m1")
V2 = Version("m", "2", "/m2")
V3 = Version("m", "3", "/m3")


def test_champion_answers_and_previous_stays_wanted() -> None:
    table = ModelTable()
    table.promote(V1)
    table.promote(V2)
    assert table.choose("m", 0.99) == (V2, "champion")
    assert table.wanted() == {V1.key, V2.key}
    assert table.wanted(keep_previous=False) == {V2.key}


def test_canary_share_routes_by_draw() -> None:
    table = ModelTable()
    table.promote(V1)
    table.promote(V2, alias=CHALLENGER, share=0.25)
    assert table.choose("m", 0.1) == (V2, CHALLENGER)
    assert table.choose("m", 0.5) == (V1, "champion")
    assert {(v.version, a, s) for v, a, s in table.served()} == {
        ("1", "champion", 0.75),
        ("2", CHALLENGER, 0.25),
    }
    table.promote(V2)  # the challenger wins: no canary left
    assert table.choose("m", 0.1) == (V2, "champion")
    assert table.routes["m"].challenger is None


def test_rollback_returns_to_a_known_version() -> None:
    table = ModelTable()
    for v in (V1, V2, V3):
        table.promote(v)
    assert table.rollback("m", "2") == V2
    assert table.choose("m", 0.0) == (V2, "champion")
    assert V3.key not in table.wanted()
    with pytest.raises(UnknownVersionError):
        table.rollback("m", "9")


def test_unknown_model_is_a_key_error() -> None:
    with pytest.raises(KeyError):
        ModelTable().choose("nope", 0.0)


def test_snapshot_round_trip() -> None:
    table = ModelTable()
    table.promote(V1)
    table.promote(V2)
    table.promote(V3, alias=CHALLENGER, share=0.1)
    again = ModelTable.from_dict(table.to_dict())
    assert again.to_dict() == table.to_dict()
    assert again.choose("m", 0.05) == (V3, CHALLENGER)


def test_an_adapter_wants_its_base_and_survives_a_snapshot() -> None:
    table = ModelTable()
    base = Version("base", "1", "/base")
    adapter = Version("m", "a", "/a", base=base.key)
    table.promote(base)
    table.promote(adapter)
    table.promote(Version("base", "2", "/base2"))
    assert table.wanted(keep_previous=False) == {adapter.key, base.key, ("base", "2")}
    assert table.full_version(adapter) == base
    assert table.full_version(base) == base
    restored = ModelTable.from_dict(table.to_dict())
    assert restored.routes["m"].champion == adapter
    assert restored.known[adapter.key].base == ("base", "1")
    assert ModelTable.from_dict({"known": [], "routes": {}}).lookup(base.key) is None
