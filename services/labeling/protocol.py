"""Request and response bodies of the REST API."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class Answer(BaseModel):
    label: Any = Field(description="The label in the project's form (class, list, spans...).")
    seconds: float | None = Field(None, ge=0, description="Time spent, for statistics.")


class NewAnnotator(BaseModel):
    name: str = Field(min_length=1, max_length=100, pattern=r"^[\w.@-]+$")
    role: str = Field("annotator", description="annotator or admin.")


class ImportBody(BaseModel):
    format: str = Field("jsonl", description="jsonl, csv or labelstudio (JSON export).")
    content: str = Field(description="The file's content.")
    annotator: str = Field("import", description="Annotator of rows that name none.")
