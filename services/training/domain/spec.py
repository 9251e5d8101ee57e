"""What a run trains: hyperparameters, the search space, and their validation.

A request's ``hyperparameters`` override :class:`Hyperparameters`; its ``search_space``
names some of them with ``{"low", "high", "log"}`` (a range) or ``{"choices": [...]}``.
Anything unknown or malformed is a :class:`SpecError` naming what is wrong.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

SAMPLERS = ("tpe", "random", "grid")
TASK_FOR_VERSION = {"preference": "dpo"}


class SpecError(ValueError):
    """The request cannot be trained as given (the message says why)."""


class Hyperparameters(BaseModel):
    """Training knobs; the defaults fit the tiny built-in model on two CPU cores."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    learning_rate: float = Field(3e-3, gt=0, lt=1)
    max_steps: int = Field(80, ge=1, le=1_000_000)
    per_device_train_batch_size: int = Field(16, ge=1, le=4096)
    gradient_accumulation_steps: int = Field(1, ge=1, le=1024)
    weight_decay: float = Field(0.0, ge=0, lt=1)
    warmup_steps: int = Field(0, ge=0)
    lr_scheduler_type: str = "constant"
    max_length: int = Field(128, ge=8, le=131_072)
    seed: int = 0
    lora_r: int = Field(8, ge=1, le=1024)
    lora_alpha: int = Field(16, ge=1)
    lora_dropout: float = Field(0.0, ge=0, lt=1)
    beta: float = Field(0.1, gt=0, description="DPO temperature.")
    eval_steps: int | None = Field(None, ge=1, description="Default: the checkpoint interval.")


class Range(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    low: float
    high: float
    log: bool = False
    choices: list[Any] | None = None

    @model_validator(mode="before")
    @classmethod
    def _choices_only(cls, data: Any) -> Any:
        if isinstance(data, dict) and "choices" in data:
            choices = data.get("choices")
            if not isinstance(choices, list) or not choices:
                raise ValueError("choices must be a non-empty list")
            return {"low": 0, "high": 1, "choices": choices, **{"log": False}}
        return data

    @model_validator(mode="after")
    def _ordered(self) -> Range:
        if self.choices is None and not self.low < self.high:
            raise ValueError(f"low ({self.low}) must be below high ({self.high})")
        if self.log and self.low <= 0:
            raise ValueError("a log range needs low > 0")
        return self


DEFAULT_SPACE = {"learning_rate": {"low": 1e-4, "high": 1e-2, "log": True}}
INT_PARAMS = {name for name, f in Hyperparameters.model_fields.items() if f.annotation is int}


class RunSpec(BaseModel):
    """A validated run: everything the trainer and the search need, nothing of the bus."""

    model_config = ConfigDict(frozen=True)

    model_name: str
    dataset: str
    dataset_version: str
    base_model: str
    task: Literal["sft", "dpo"]
    lora: bool
    hyperparameters: Hyperparameters
    trials: int = Field(0, ge=0, le=1000)
    sampler: str = "tpe"
    space: dict[str, Range] = Field(default_factory=dict)
    exclude_records: frozenset[str] = frozenset()

    def with_params(self, params: dict[str, Any]) -> Hyperparameters:
        merged = {**self.hyperparameters.model_dump(), **params}
        return Hyperparameters.model_validate(merged)


def _errors(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or 'value'}: {e['msg']}" for e in exc.errors()
    )


def build_spec(
    *,
    model_name: str,
    dataset: str,
    dataset_version: str,
    base_model: str,
    version_task: str | None,
    task: str | None,
    lora: bool,
    hyperparameters: dict[str, Any],
    trials: int,
    sampler: str,
    space: dict[str, Any],
    exclude_records: list[str] = (),  # type: ignore[assignment]
) -> RunSpec:
    """Validate a request against a dataset version's task; SpecError with every problem."""
    chosen = task or TASK_FOR_VERSION.get(version_task or "", "sft")
    if chosen not in ("sft", "dpo"):
        raise SpecError(f"invalid task {chosen!r}: expected sft or dpo")
    if chosen == "dpo" and version_task not in (None, "preference"):
        raise SpecError(f"dpo needs a preference version; this one is {version_task!r}")
    try:
        params = Hyperparameters.model_validate(hyperparameters)
    except ValidationError as exc:
        raise SpecError(f"invalid hyperparameters: {_errors(exc)}") from None
    if sampler not in SAMPLERS:
        raise SpecError(f"invalid search space: sampler {sampler!r} is not one of {SAMPLERS}")
    raw_space = space or (DEFAULT_SPACE if trials else {})
    unknown = sorted(set(raw_space) - set(Hyperparameters.model_fields))
    if unknown:
        raise SpecError(f"invalid search space: unknown hyperparameter(s) {', '.join(unknown)}")
    ranges: dict[str, Range] = {}
    for name, value in raw_space.items():
        try:
            ranges[name] = Range.model_validate(value)
        except ValidationError as exc:
            raise SpecError(f"invalid search space: {name}: {_errors(exc)}") from None
    if sampler == "grid" and any(r.choices is None for r in ranges.values()):
        raise SpecError("invalid search space: the grid sampler needs `choices` for every entry")
    return RunSpec(
        model_name=model_name,
        dataset=dataset,
        dataset_version=dataset_version,
        base_model=base_model,
        task=chosen,  # type: ignore[arg-type]
        lora=lora,
        hyperparameters=params,
        trials=trials,
        sampler=sampler,
        space=ranges,
        exclude_records=frozenset(exclude_records),
    )
