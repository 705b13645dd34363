"""The requirements spec (NMLOps stage 1): YAML in, a typed and validated model out.

A bad spec must fail before any work starts, with the field path and the reason on one line, so the
spec is parsed with pydantic (``extra="forbid"`` everywhere: a typo is an error, not a silent default).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

__all__ = [
    "Spec",
    "SpecError",
    "DatasetSpec",
    "EncoderSpec",
    "ModelSpec",
    "TrainSpec",
    "BudgetSpec",
    "KPISpec",
    "EarlyExitSpec",
    "load_spec",
    "parse_spec",
]


class SpecError(ValueError):
    """A spec that cannot be used; ``str()`` is one line naming the field path and the reason."""

    def __init__(self, errors: list[tuple[str, str]], source: str = "spec") -> None:
        self.errors = errors
        self.source = source
        first = "; ".join(f"{path}: {msg}" for path, msg in errors)
        super().__init__(f"invalid {source}: {first}")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DatasetSpec(_Strict):
    """Which data and how it is split. ``name`` is a built-in source (see fabric.data)."""

    name: str = Field(description="built-in dataset name, e.g. 'digits' or 'basic_motions'")
    test_fraction: float = Field(0.25, gt=0.0, lt=1.0)
    val_fraction: float = Field(0.0, ge=0.0, lt=1.0)
    limit: int | None = Field(None, gt=0, description="use only the first N samples (quick runs)")

    @field_validator("name")
    @classmethod
    def _known(cls, v: str) -> str:
        from fabric.data import DATASETS

        if v not in DATASETS:
            raise ValueError(f"unknown dataset {v!r}; valid: {sorted(DATASETS)}")
        return v


class EncoderSpec(_Strict):
    name: str = "rate"
    timesteps: int = Field(25, gt=0, le=10_000)
    params: dict[str, Any] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _known(cls, v: str) -> str:
        from fabric.encode import ENCODERS

        if v not in ENCODERS:
            raise ValueError(f"unknown encoder {v!r}; valid: {sorted(ENCODERS)}")
        return v


class ModelSpec(_Strict):
    """A feed-forward LIF network template: input -> hidden... -> output, all LIF layers."""

    template: Literal["lif_mlp"] = "lif_mlp"
    hidden: list[int] = Field(default_factory=lambda: [64], min_length=1)
    beta: float = Field(0.9, gt=0.0, lt=1.0, description="membrane decay per step")
    threshold: float = Field(1.0, gt=0.0)

    @field_validator("hidden")
    @classmethod
    def _positive(cls, v: list[int]) -> list[int]:
        for i, h in enumerate(v):
            if h <= 0:
                raise ValueError(f"hidden[{i}] must be > 0, got {h}")
        return v


class TrainSpec(_Strict):
    epochs: int = Field(8, gt=0, le=1000)
    batch_size: int = Field(64, gt=0)
    lr: float = Field(5e-3, gt=0.0)
    device: Literal["cpu", "cuda", "auto"] = "auto"


class BudgetSpec(_Strict):
    max_neurons: int | None = Field(None, gt=0)
    max_memory_kb: float | None = Field(None, gt=0)
    max_train_seconds: float | None = Field(None, gt=0)


class KPISpec(_Strict):
    """Acceptance thresholds; each is optional and checked per target kind."""

    min_accuracy: float | None = Field(None, ge=0.0, le=1.0)
    max_latency_p50_ms: float | None = Field(None, gt=0)
    max_latency_p99_ms: float | None = Field(None, gt=0)
    max_energy_mj: float | None = Field(None, gt=0)
    max_footprint_kb: float | None = Field(None, gt=0)


class EarlyExitSpec(_Strict):
    """Top-K cutoff inference (shared/seeds/004): stop once the top-k classes are stable."""

    k: int = Field(1, ge=1)
    patience: int = Field(5, ge=1)


class Spec(_Strict):
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    dataset: DatasetSpec
    encoder: EncoderSpec = Field(default_factory=EncoderSpec)
    model: ModelSpec = Field(default_factory=ModelSpec)
    train: TrainSpec = Field(default_factory=TrainSpec)
    targets: list[str] = Field(default_factory=lambda: ["cpu"], min_length=1)
    budgets: BudgetSpec = Field(default_factory=BudgetSpec)
    kpis: KPISpec = Field(default_factory=KPISpec)
    early_exit: EarlyExitSpec = Field(default_factory=EarlyExitSpec)
    seed: int = Field(0, ge=0)
    eval_batch_size: int = Field(128, gt=0)
    search_space: dict[str, Any] = Field(default_factory=dict)

    @field_validator("targets")
    @classmethod
    def _kinds(cls, v: list[str]) -> list[str]:
        from actors.base import RUNTIMES

        for i, k in enumerate(v):
            if k not in RUNTIMES:
                raise ValueError(f"targets[{i}]: unknown device kind {k!r}; valid: {sorted(RUNTIMES)}")
        if len(set(v)) != len(v):
            raise ValueError("targets must not repeat a kind")
        return v

    @model_validator(mode="after")
    def _fractions(self) -> Spec:
        if self.dataset.test_fraction + self.dataset.val_fraction >= 1.0:
            raise ValueError("dataset.test_fraction + dataset.val_fraction must be < 1")
        return self

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "spec") -> Spec:
        return parse_spec(data, source)

    @property
    def hash(self) -> str:
        """sha256 of the canonical JSON form: the spec's identity in lineage and caches."""
        blob = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":")).encode()
        return hashlib.sha256(blob).hexdigest()


def _loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "<root>"


def parse_spec(data: Any, source: str = "spec") -> Spec:
    if not isinstance(data, dict):
        raise SpecError([("<root>", f"expected a mapping, got {type(data).__name__}")], source)
    try:
        return Spec.model_validate(data)
    except ValidationError as exc:
        errs = []
        for e in exc.errors():
            msg = e["msg"].removeprefix("Value error, ")
            errs.append((_loc(tuple(e["loc"])), msg))
        raise SpecError(errs, source) from None


def load_spec(path: str | Path) -> Spec:
    """Read and validate a YAML spec file."""
    p = Path(path)
    if not p.is_file():
        raise SpecError([("<file>", f"no such spec file: {p}")], str(p))
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else "<file>"
        raise SpecError([(where, f"not valid YAML: {getattr(exc, 'problem', exc)}")], str(p)) from None
    return parse_spec(data, str(p))
