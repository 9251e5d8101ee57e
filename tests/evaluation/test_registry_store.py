"""The registry on its tables, the same test on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session

from services.evaluation.adapters.store import SqlRegistryStore
from services.evaluation.registry import Registry, RegistryError
from shared.events import ClaimCheck, Event, ModelRolledBack, ModelTrained

pytestmark = pytest.mark.unit

ARTIFACT = ClaimCheck(uri="/models/x", sha256="0" * 64, size=1, media_type="inode/directory")


def trained(version: str) -> ModelTrained:
    return ModelTrained(
        run_id=uuid.uuid4(),
        model_name="m",
        model_version=version,
        artifact=ARTIFACT,
        dataset="d",
        dataset_version="dv",
    )


def test_champion_chain_promotions_and_rollbacks(engine: Engine) -> None:
    emitted: list[Event] = []

    def step(fn: Any) -> Any:
        with Session(engine) as session:
            result = fn(Registry(SqlRegistryStore(session), lambda e: emitted.append(e) or e))
            session.commit()
            return result

    assert step(lambda r: r.observe_served("m", "bootstrap"))
    assert not step(lambda r: r.observe_served("m", "bootstrap"))  # once
    for version in ("v2", "v3"):
        step(lambda r, v=version: r.register_trained(trained(v)))
        assert step(lambda r, v=version: r.register_trained(trained(v))) is None
    with Session(engine) as session:
        for row in SqlRegistryStore(session).versions("m"):
            row.status = "passed" if row.version != "bootstrap" else row.status
            session.add(row)
        session.commit()
    step(lambda r: r.promote("m", "v2", "alice"))
    step(lambda r: r.promote("m", "v3", "alice"))
    with pytest.raises(RegistryError, match="already the champion"):
        step(lambda r: r.promote("m", "v3", "alice"))
    assert step(lambda r: r.champion_chain("m")) == ["bootstrap", "v2", "v3"]

    back = step(lambda r: r.rollback("m", "bob"))
    assert (back.from_version, back.to_version) == ("v3", "v2")
    back = step(lambda r: r.rollback("m", "bob"))
    assert (back.from_version, back.to_version) == ("v2", "bootstrap")
    with pytest.raises(RegistryError, match="no previous champion"):
        step(lambda r: r.rollback("m", "bob"))
    assert step(lambda r: r.rollback("m", "bob", to="v3")).to_version == "v3"

    with Session(engine) as session:
        store = SqlRegistryStore(session)
        assert store.alias("m", "champion").version == "v3"
        assert [h.action for h in store.history("m") if h.alias == "champion"] == [
            "served",
            "promote",
            "promote",
            "rollback",
            "rollback",
            "rollback",
        ]
        assert {r.version: r.status for r in store.versions("m")}["v2"] == "retired"
    rollbacks = [e for e in emitted if isinstance(e, ModelRolledBack)]
    assert [e.to_version for e in rollbacks] == ["v2", "bootstrap", "v3"]
