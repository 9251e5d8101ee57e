"""The registry's own tables (sqlmodel): versions, aliases, alias history, dataset versions."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlmodel import Field, Session, SQLModel, col, select


def now() -> datetime:
    return datetime.now(UTC)


class ModelVersionRow(SQLModel, table=True):
    __tablename__ = "eval_model_version"

    name: str = Field(primary_key=True)
    version: str = Field(primary_key=True)
    status: str = Field(index=True)  # queued, evaluating, passed, blocked, awaiting-approval,
    # promoted, failed, served, retired
    source: str = "trained"  # trained, served, external
    artifact_json: str | None = None
    run_id: str | None = None
    dataset: str | None = None
    dataset_version: str | None = None
    train_metrics_json: str = "{}"
    registered_at: datetime = Field(default_factory=now)
    evaluated_at: datetime | None = None
    passed: bool | None = None
    scores_json: str = "{}"
    verdicts_json: str = "[]"
    compared_with: str | None = None
    report_json: str | None = None  # ClaimCheck of the JSON report
    report_html_json: str | None = None
    card_json: str | None = None  # ClaimCheck of the Markdown model card
    error: str | None = None
    correlation_id: str | None = None
    attempts: int = 0
    lease_owner: str | None = Field(default=None, max_length=120)  # shared.storage.lease
    lease_until: datetime | None = None


class AliasRow(SQLModel, table=True):
    __tablename__ = "eval_alias"

    name: str = Field(primary_key=True)
    alias: str = Field(primary_key=True)
    version: str
    traffic_share: float = 1.0
    updated_at: datetime = Field(default_factory=now)


class AliasHistoryRow(SQLModel, table=True):
    __tablename__ = "eval_alias_history"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(index=True)
    alias: str
    version: str | None  # None: the alias was removed
    previous: str | None = None
    action: str  # served, promote, approve, rollback, external, canary, clear
    actor: str = "system"
    reason: str = ""
    at: datetime = Field(default_factory=now)


class DatasetVersionRow(SQLModel, table=True):
    __tablename__ = "eval_dataset_version"

    dataset: str = Field(primary_key=True)
    version: str = Field(primary_key=True)
    manifest_json: str


class SqlRegistryStore:
    """The RegistryStore port on one sqlmodel session (the caller commits)."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def version(self, name: str, version: str) -> ModelVersionRow | None:
        return self.session.get(ModelVersionRow, (name, version))

    def versions(self, name: str | None = None) -> list[ModelVersionRow]:
        query = select(ModelVersionRow).order_by(col(ModelVersionRow.registered_at))
        if name is not None:
            query = query.where(ModelVersionRow.name == name)
        return list(self.session.exec(query))

    def add(self, row: SQLModel) -> None:
        self.session.add(row)

    def aliases(self, name: str) -> dict[str, AliasRow]:
        rows = self.session.exec(select(AliasRow).where(AliasRow.name == name))
        return {row.alias: row for row in rows}

    def alias(self, name: str, alias: str) -> AliasRow | None:
        return self.session.get(AliasRow, (name, alias))

    def set_alias(self, name: str, alias: str, version: str | None, share: float = 1.0) -> None:
        row = self.alias(name, alias)
        if version is None:
            if row is not None:
                self.session.delete(row)
            return
        if row is None:
            row = AliasRow(name=name, alias=alias, version=version)
        row.version, row.traffic_share, row.updated_at = version, share, now()
        self.session.add(row)

    def history(self, name: str) -> list[AliasHistoryRow]:
        query = (
            select(AliasHistoryRow)
            .where(AliasHistoryRow.name == name)
            .order_by(col(AliasHistoryRow.id))
        )
        return list(self.session.exec(query))

    def queued(self) -> list[ModelVersionRow]:
        query = select(ModelVersionRow).where(
            col(ModelVersionRow.status).in_(["queued", "evaluating"])
        )
        return list(self.session.exec(query.order_by(col(ModelVersionRow.registered_at))))

    def manifest(self, dataset: str, version: str) -> str | None:
        row = self.session.get(DatasetVersionRow, (dataset, version))
        return row.manifest_json if row else None

    def names(self) -> list[str]:
        rows = self.session.exec(select(ModelVersionRow.name).distinct())
        return sorted(set(rows))
