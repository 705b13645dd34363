"""The requirements spec (NMLOps stage 1): YAML in, a typed and validated model out.

A bad spec must fail before any work starts, with the field path and the reason on one line, so the
spec is parsed with pydantic (``extra="forbid"`` everywhere: a typo is an error, not a silent default).
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_serializer,
    model_validator,
)
from pydantic_core import PydanticCustomError

__all__ = [
    "Spec",
    "SpecError",
    "DatasetSpec",
    "EncoderSpec",
    "ModelSpec",
    "TrainSpec",
    "BudgetSpec",
    "KPISpec",
    "RepeatsSpec",
    "EarlyExitSpec",
    "CompressSpec",
    "GoldenSpec",
    "FloatRange",
    "ParamRange",
    "SearchSpaceSpec",
    "ServeSpec",
    "load_spec",
    "parse_spec",
]


class SpecError(ValueError):
    """A spec that cannot be used; ``str()`` is one line naming the field path and the reason."""

    def __init__(self, errors: list[tuple[str, str]], source: str = "spec") -> None:
        # one line whatever the input: a key holding a line break, a multi-line YAML error
        errors = [("\\n".join(str(path).splitlines()) or "<root>", "; ".join(p.strip() for p in str(msg).splitlines()))
                  for path, msg in errors]
        self.errors = errors
        self.source = source
        first = "; ".join(f"{path}: {msg}" for path, msg in errors)
        super().__init__(f"invalid {source}: {first}")


# Sane upper bounds: a value past these is a typo or an attack, never a run (issue #18, validation at the door).
MAX_BATCH_SIZE = 65_536
MAX_LAYER_SIZE = 1_000_000
MAX_LR = 10.0
MAX_THRESHOLD = 1e6
MAX_SEED = 2**32 - 1  # numpy's seed range
MAX_LOSS_WEIGHT = 100.0  # a regulariser weight past this drowns the task loss: a typo
MAX_REPEATS = 50
MAX_TRAIN_WORKERS = 64  # Ray Train data-parallel workers
MAX_ENCODER_PARAM = 1e9  # |encoder parameter|: past this a gain/threshold/window overflows float32 or int64


class _Strict(BaseModel):
    # allow_inf_nan=False: every float field of a spec is finite (``.inf``/``.nan`` in YAML are refused)
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


def _non_finite(value: Any, path: str = "") -> str | None:
    """The path of the first NaN/inf number inside ``value`` (a nested dict/list), or None."""
    if isinstance(value, float) and not math.isfinite(value):
        return path
    if isinstance(value, dict):
        items: Any = value.items()
    elif isinstance(value, list | tuple):
        items = enumerate(value)
    else:
        return None
    for k, v in items:
        sub = f"{path}[{k}]" if isinstance(k, int) else (f"{path}.{k}" if path else str(k))
        hit = _non_finite(v, sub)
        if hit is not None:
            return hit
    return None


class DatasetSpec(_Strict):
    """Which data and how it is split: exactly one of ``name`` (a built-in source, see
    fabric.data.datasets), ``version`` (a dataset version stored by ``fabric data ingest``, resolved in
    the run's registry) or ``path`` (a file or fsspec URL that the data stage ingests, so its version
    is content-addressed). The ``path`` options are those of ``fabric data ingest``.

    Fields left at their default are not serialized (see ``_drop_defaults``), so a built-in spec dumps
    exactly as before these sources existed and keeps its hash and cache keys."""

    name: str | None = Field(None, description="built-in dataset name, e.g. 'digits' or 'basic_motions'")
    version: str | None = Field(None, description="dataset artifact id or unique hex prefix (>= 6 chars)")
    path: str | None = Field(None, description="a file or fsspec URL (s3://bucket/x.parquet) to ingest")
    format: Literal["auto", "npz", "npy", "parquet", "csv", "ts", "events"] = Field(
        "auto", validate_default=True, description="file format of path (auto: from the extension; .zip = events)")
    labels: str | None = Field(None, description="labels file (.npy, path or URL) for a path without labels")
    label_column: str | None = Field(None, description="label column of a CSV/Parquet path")
    split_column: str = Field("split", min_length=1, description="column/entry holding train/val/test, if any")
    test: str | None = Field(None, description="the matching _TEST file of a UEA/UCR .ts path")
    sampling_rate_hz: float | None = Field(None, gt=0.0)
    channels: list[str] | None = None
    layout: Literal["auto", "static", "timeseries"] = "auto"
    sensor_size: list[int] | None = Field(None, min_length=2, max_length=2,
                                          description="event archive: sensor [width, height] (else from file headers)")
    time_unit: Literal["us", "ms", "ns", "s"] = Field("us", description="event archive: unit of the recordings' t")
    duration_us: int | None = Field(None, gt=0, le=3_600_000_000, description="event archive: sample window (us)")
    transforms: list[dict[str, Any]] | None = Field(
        None, max_length=16, description="event archive: tonic transforms in order, e.g. [{denoise: 10000}]")
    normalize: Literal["per_channel", "global", "none"] = Field(
        "per_channel", description="min-max to [0, 1] with training-split statistics (path only)")
    test_fraction: float = Field(0.25, gt=0.0, lt=1.0)
    val_fraction: float = Field(0.0, ge=0.0, lt=1.0)
    limit: int | None = Field(None, gt=0, description="use only the first N samples (quick runs)")

    @field_validator("name")
    @classmethod
    def _known(cls, v: str | None) -> str | None:
        from fabric.data.datasets import DATASETS

        if v is not None and v not in DATASETS:
            raise ValueError(f"unknown dataset {v!r}; valid: {sorted(DATASETS)}")
        return v

    @field_validator("version")
    @classmethod
    def _version_ref(cls, v: str | None) -> str | None:
        if v is None:
            return v
        ref = v.strip().lower()
        if not (6 <= len(ref) <= 64 and all(c in "0123456789abcdef" for c in ref)):
            raise ValueError(f"give a dataset version id or a unique hex prefix of >= 6 chars, got {v!r}")
        return ref

    @field_validator("path")
    @classmethod
    def _path_given(cls, v: str | None) -> str | None:
        if v is not None and not v.strip():
            raise ValueError("must be a file path or URL, got an empty string")
        return v

    @field_validator("format")
    @classmethod
    def _format_known(cls, v: str, info: ValidationInfo) -> str:
        # auto must be decidable now, not after the data stage has started
        path = info.data.get("path")
        if path is None and v != "auto":
            raise ValueError("applies to dataset.path only")
        if path is None or v != "auto":
            return v
        from fabric.data.datasets import FORMATS

        ext = path.rstrip("/").rsplit("/", 1)[-1].rpartition(".")[2].lower() if "." in path else ""
        if ext not in (*FORMATS, "pq", "zip"):
            raise ValueError(f"cannot tell the format of {path!r} from its extension; give one of {list(FORMATS)}")
        return v

    @model_validator(mode="after")
    def _one_source(self) -> DatasetSpec:
        given = [f for f in ("name", "version", "path") if getattr(self, f) is not None]
        if len(given) != 1:
            got = f"got {' and '.join(given)}" if given else "got none"
            raise ValueError(f"give exactly one of name (built-in), version (stored dataset) or path (file/URL); {got}")
        return self

    @field_validator("sensor_size")
    @classmethod
    def _sensor(cls, v: list[int] | None) -> list[int] | None:
        if v is not None and not all(0 < int(d) <= 4096 for d in v):
            raise ValueError(f"must be [width, height], integers in 1..4096, got {v}")
        return v

    @field_validator("transforms")
    @classmethod
    def _transforms(cls, v: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
        from fabric.data.eventfiles import check_transforms

        return None if v is None else check_transforms(v)  # EventFileError is a ValueError naming the entry

    @field_validator("labels", "label_column", "split_column", "test", "sampling_rate_hz", "channels", "layout",
                     "normalize", "sensor_size", "time_unit", "duration_us", "transforms")
    @classmethod
    def _path_only(cls, v: Any, info: ValidationInfo) -> Any:
        if info.data.get("path") is None and v != DatasetSpec.model_fields[str(info.field_name)].default:
            raise ValueError("applies to dataset.path only")
        return v

    @field_validator("test_fraction", "val_fraction")
    @classmethod
    def _not_with_version(cls, v: float, info: ValidationInfo) -> float:
        if info.data.get("version") is not None and v != DatasetSpec.model_fields[str(info.field_name)].default:
            raise ValueError("a dataset version carries the split made when it was ingested; leave it out (or "
                             "re-ingest with --test-fraction/--val-fraction)")
        return v

    @model_serializer(mode="wrap")
    def _drop_defaults(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # the source fields and path options are written only when used: built-in specs dump as before
        return {k: v for k, v in handler(self).items()
                if not (k in _OPTIONAL_DATASET_FIELDS and v == DatasetSpec.model_fields[k].default)}

    @property
    def ref(self) -> str:
        """A short human name of the source: the built-in name, ``version:<id>`` or ``path:<path>``."""
        if self.name is not None:
            return self.name
        return f"version:{self.version}" if self.version is not None else f"path:{self.path}"


_PATH_OPTIONS = ("format", "labels", "label_column", "split_column", "test", "sampling_rate_hz", "channels", "layout",
                 "normalize", "sensor_size", "time_unit", "duration_us", "transforms")
_OPTIONAL_DATASET_FIELDS = frozenset(("name", "version", "path", *_PATH_OPTIONS))


class EncoderSpec(_Strict):
    name: str = "rate"
    timesteps: int = Field(25, gt=0, le=10_000)
    params: dict[str, Any] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _known(cls, v: str) -> str:
        from fabric.data.encode import ENCODERS

        if v not in ENCODERS:
            raise ValueError(f"unknown encoder {v!r}; valid: {sorted(ENCODERS)}")
        return v

    @field_validator("params")
    @classmethod
    def _params(cls, v: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        # a typo or a bad value must fail here, naming encoder.params.X, not deep inside the encode stage
        from fabric.data.encode import EncoderParamError, validate_encoder_params

        bad = _non_finite(v)
        if bad is not None:
            raise PydanticCustomError("encoder_param", "must be a finite number, got {value}",
                                      {"param": bad, "value": _dig(v, bad), "reason": "non-finite"})
        huge = next((k for k, x in v.items() if isinstance(x, int | float) and not isinstance(x, bool)
                     and abs(x) > MAX_ENCODER_PARAM), None)
        if huge is not None:
            raise PydanticCustomError("encoder_param", "must be within +-{limit:g}, got {value}",
                                      {"param": huge, "value": v[huge], "limit": MAX_ENCODER_PARAM})
        if "name" not in info.data:
            return v
        try:
            validate_encoder_params(info.data["name"], v)
        except EncoderParamError as exc:
            raise PydanticCustomError("encoder_param", "{reason}", {"param": exc.param, "reason": exc.reason}) from None
        return v


MODEL_TEMPLATES = ("conv_snn", "recurrent", "cuba_mlp")  # factories in fabric.model.templates (same names)


class ModelSpec(_Strict):
    """The network: the ``lif_mlp`` template (input -> hidden... -> output, all LIF layers), or a model
    from anywhere (issue #15): ``nir`` (a pre-trained NIR graph: file, fsspec URL or ``nir`` artifact
    id/prefix; not trained) or ``module`` (``"path/to/file.py:build"`` / ``"pkg.mod:build"``, called as
    ``build(input_shape, n_classes, **params)`` and returning an snntorch ``nn.Sequential``), or ``zoo``
    (a published zoo entry, fabric.flow.zoo: its weights and encoder; ``train.epochs: 0`` deploys it as
    is, more epochs fine-tune it)."""

    template: Literal["lif_mlp"] = "lif_mlp"
    hidden: list[int] = Field(default_factory=lambda: [64], min_length=1)
    beta: float = Field(0.9, gt=0.0, lt=1.0, description="membrane decay per step")
    threshold: float = Field(1.0, gt=0.0, le=MAX_THRESHOLD)
    # issue #19 item 3: one leak / threshold per layer (hidden layers, then the output layer)
    betas: list[float] | None = Field(None, min_length=1, description="per-layer beta (hidden..., output); replaces beta")
    thresholds: list[float] | None = Field(None, min_length=1,
                                           description="per-layer threshold (hidden..., output); replaces threshold")
    nir: str | None = Field(None, min_length=1, description="pre-trained NIR graph: path, fsspec URL or nir artifact id")
    module: str | None = Field(None, min_length=3, description="user factory 'path/to/file.py:build' or 'pkg.mod:build'")
    params: dict[str, Any] = Field(default_factory=dict, description="keyword arguments of the user factory")
    zoo: str | None = Field(None, min_length=1, pattern=r"^[A-Za-z0-9_.-]+$",
                            description="a model zoo entry (fabric zoo ls): start from its weights and encoder")
    version: int | None = Field(None, ge=1, description="the zoo entry's version (default: its newest)")

    @property
    def source(self) -> Literal["template", "nir", "module", "zoo"]:
        """Where the network comes from: the template, a NIR graph, a user factory, or a zoo entry."""
        if self.zoo is not None:
            return "zoo"
        return "nir" if self.nir is not None else "module" if self.module is not None else "template"

    @field_validator("module")
    @classmethod
    def _ref(cls, v: str | None) -> str | None:
        if v is not None and (":" not in v or not v.rpartition(":")[2].isidentifier() or not v.rpartition(":")[0]):
            raise ValueError(f"expected 'path/to/file.py:build' or 'pkg.mod:build', got {v!r}")
        return v

    @field_validator("params")
    @classmethod
    def _finite(cls, v: dict[str, Any]) -> dict[str, Any]:
        bad = _non_finite(v)
        if bad is not None:
            raise ValueError(f"params.{bad} must be a finite number, got {_dig(v, bad)}")
        return v

    @model_validator(mode="before")
    @classmethod
    def _template_factory(cls, data: Any) -> Any:
        # conv_snn / recurrent / cuba_mlp are factories in fabric.model.templates: the spec names the
        # factory, so a template takes the user-module code path (build, checks, training, export)
        if not isinstance(data, dict) or data.get("template", "lif_mlp") == "lif_mlp":
            return data
        name = data["template"]
        if name not in MODEL_TEMPLATES:
            raise ValueError(f"template: unknown template {name!r}; valid: {['lif_mlp', *MODEL_TEMPLATES]}")
        clash = sorted(set(data) - {"template", "params"})
        if clash:
            raise ValueError(f"{', '.join(clash)}: not a setting of the {name} template (its sizes go in params)")
        return {"module": f"fabric.model.templates:{name}", "params": data.get("params") or {}}

    @model_validator(mode="after")
    def _one_source(self) -> ModelSpec:
        if self.nir is not None and self.module is not None:
            raise ValueError("give one of model.nir (a pre-trained graph) and model.module (a factory), not both")
        if self.zoo is not None and (self.nir is not None or self.module is not None):
            other = "nir" if self.nir is not None else "module"
            raise ValueError(f"give one of model.zoo (a zoo entry) and model.{other}, not both")
        if self.version is not None and self.zoo is None:
            raise ValueError("version: only with model.zoo (which version of the entry)")
        if self.params and self.module is None:
            raise ValueError("params: only for model.module (the factory's keyword arguments) or the conv_snn, recurrent, cuba_mlp templates")
        template_only = sorted(self.model_fields_set & {"template", "hidden", "beta", "threshold", "betas", "thresholds"})
        if self.source != "template" and template_only:
            raise ValueError(f"{', '.join(template_only)}: settings of the lif_mlp template, not of a model.{self.source} model")
        for one, many in (("beta", "betas"), ("threshold", "thresholds")):
            vals = getattr(self, many)
            if vals is None:
                continue
            if one in self.model_fields_set:
                raise ValueError(f"give one of {one} (every layer) and {many} (one per layer), not both")
            if len(vals) != len(self.hidden) + 1:
                raise ValueError(f"{many}: {len(vals)} values for {len(self.hidden) + 1} layers "
                                 f"(hidden {self.hidden} + the output layer: one each)")
        return self

    @field_validator("betas")
    @classmethod
    def _betas(cls, v: list[float] | None) -> list[float] | None:
        for i, b in enumerate(v or []):
            if not 0.0 < b < 1.0:
                raise ValueError(f"betas[{i}] must be in (0, 1), got {b}")
        return v

    @field_validator("thresholds")
    @classmethod
    def _thresholds(cls, v: list[float] | None) -> list[float] | None:
        for i, t in enumerate(v or []):
            if not 0.0 < t <= MAX_THRESHOLD:
                raise ValueError(f"thresholds[{i}] must be in (0, {MAX_THRESHOLD:g}], got {t}")
        return v

    @property
    def layer_betas(self) -> float | list[float]:
        """What the lif_mlp builder takes: the per-layer list when given, else the one beta."""
        return list(self.betas) if self.betas is not None else self.beta

    @property
    def layer_thresholds(self) -> float | list[float]:
        """What the lif_mlp builder takes: the per-layer list when given, else the one threshold."""
        return list(self.thresholds) if self.thresholds is not None else self.threshold

    @model_serializer(mode="wrap")
    def _drop_unset(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # the user-model fields are written only when set, so a lif_mlp spec keeps its hash and cache keys
        out = handler(self)
        out = {k: v for k, v in out.items()
               if not (k in ("nir", "module", "zoo", "version", "betas", "thresholds") and v is None
                       or k == "params" and not v)}
        # a per-layer list replaces the single value: only the list is written (it round-trips)
        out = {k: v for k, v in out.items() if not (k == "beta" and self.betas is not None
                                                    or k == "threshold" and self.thresholds is not None)}
        if self.source != "template":  # template settings are refused with a user model: never write them
            out = {k: v for k, v in out.items() if k not in ("template", "hidden", "beta", "threshold")}
        return out

    @field_validator("hidden")
    @classmethod
    def _positive(cls, v: list[int]) -> list[int]:
        for i, h in enumerate(v):
            if h <= 0:
                raise ValueError(f"hidden[{i}] must be > 0, got {h}")
            if h > MAX_LAYER_SIZE:
                raise ValueError(f"hidden[{i}] must be <= {MAX_LAYER_SIZE}, got {h}")
        return v


class TrainSpec(_Strict):
    epochs: int = Field(8, ge=0, le=1000, description="0: only with model.zoo (deploy the entry as is)")
    batch_size: int = Field(64, gt=0, le=MAX_BATCH_SIZE)
    lr: float = Field(5e-3, gt=0.0, le=MAX_LR)
    device: Literal["cpu", "cuda", "auto"] = "auto"
    mismatch_cv: float = Field(0.0, ge=0.0, lt=1.0, description="mismatch-aware training: per-batch log-normal "
                               "weight gain per neuron and sign with this CV, ramped up over the first half of "
                               "the epochs (0 = off; DYNAP-SE: 0.2, the chip's CV, measured best "
                               "in docs/devices_notes.md)")
    # Ray Train (fabric.model.distributed): workers > 1 is DDP (gloo on CPU, nccl on GPU), batch_size
    # being the global batch; use_gpu: auto = a GPU per worker when the cluster has them, true = required
    workers: int = Field(1, ge=1, le=MAX_TRAIN_WORKERS, description="Ray Train workers (DDP when > 1)")
    use_gpu: bool | Literal["auto"] = Field("auto", description="Ray Train workers on GPUs: auto, true or false")
    checkpoint_every: int = Field(1, ge=1, le=1000, description="epochs between checkpoint artifacts")
    # loss terms (issue #19 item 3); 0 = off, and then not serialized (older specs keep their hash)
    rate_reg: float = Field(0.0, ge=0.0, le=MAX_LOSS_WEIGHT, description="spike-rate regulariser: weight of the "
                            "mean output spike rate added to the loss (fewer spikes, less energy)")
    exit_reg: float = Field(0.0, ge=0.0, le=MAX_LOSS_WEIGHT, description="early-exit regulariser: weight of a "
                            "cross-entropy on the cumulative output counts of every step, earlier steps weighted "
                            "more, so the right class leads early (rewards Top-K cutoff exits)")

    @model_validator(mode="after")
    def _gpu_choice(self) -> TrainSpec:
        if self.use_gpu is True and self.device not in ("auto", "cuda"):  # torch devices, not fabric kinds
            raise ValueError("use_gpu: true contradicts device: cpu")
        return self

    @model_serializer(mode="wrap")
    def _drop_ray_defaults(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # the Ray Train fields are written only when not default, so older specs keep their hash and cache keys
        out = handler(self)
        defaults = {"workers": 1, "use_gpu": "auto", "checkpoint_every": 1, "rate_reg": 0.0, "exit_reg": 0.0}
        return {k: v for k, v in out.items() if not (k in defaults and v == defaults[k] and type(v) is type(defaults[k]))}


class BudgetSpec(_Strict):
    max_neurons: int | None = Field(None, gt=0)
    max_memory_kb: float | None = Field(None, gt=0)
    max_train_seconds: float | None = Field(None, gt=0)


class KPISpec(_Strict):
    """Acceptance thresholds; each is optional and checked per target kind.

    One field per gated KPI in :data:`fabric.kpis.KPIS` (its ``bound``: ``min_`` for a figure where
    higher is better, ``max_`` otherwise); tests/unit/test_kpis.py checks the two lists agree, so a
    new KPI is its entry there plus its field here."""

    min_accuracy: float | None = Field(None, ge=0.0, le=1.0)
    max_latency_p50_ms: float | None = Field(None, gt=0)
    max_latency_p99_ms: float | None = Field(None, gt=0)
    max_energy_mj: float | None = Field(None, gt=0)
    max_footprint_kb: float | None = Field(None, gt=0)
    on: str = Field("mean", description="what a gate compares with its limit when the run has repeats "
                    "(fabric.kpis.GATE_ON): mean, lower_ci, upper_ci or worst_ci; without repeats, the point estimate")

    @field_validator("on")
    @classmethod
    def _on(cls, v: str) -> str:
        from fabric.kpis import GATE_ON

        if v not in GATE_ON:
            raise ValueError(f"must be one of {list(GATE_ON)}, got {v!r}")
        return v

    @model_serializer(mode="wrap")
    def _drop_default_on(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # written only when set, so specs without it keep their hash
        return {k: v for k, v in handler(self).items() if not (k == "on" and v == "mean")}


class RepeatsSpec(_Strict):
    """Repeated trials (issue #19 item 2): the run's model re-trained and re-measured with ``n`` seeds
    (the spec's seed first, then ones derived from it), reported as mean, std and a Student-t
    ``confidence`` interval per KPI per kind. ``n: 1`` is a plain run."""

    n: int = Field(1, ge=1, le=MAX_REPEATS)
    confidence: float = Field(0.95, gt=0.0, lt=1.0)


class EarlyExitSpec(_Strict):
    """Top-K cutoff inference (Wu et al. 2025, DOI 10.3389/fnins.2025.1522788): stop once the top-k classes are stable."""

    k: int = Field(1, ge=1)
    patience: int = Field(5, ge=1)


class CompressSpec(_Strict):
    """Compression after training (all off by default), applied in this order, each a model variant:
    ``structured`` (drop that fraction of each hidden layer's neurons, lowest L1 norm first), ``prune``
    (zero that fraction of each weight matrix by magnitude), ``qat_bits`` (fake-quant fine-tune to that
    weight precision; ``auto`` = the lowest weight precision among the targets), ``state_bits``
    (membrane kept in that many fixed-point bits). ``deploy`` picks the variant that is exported."""

    prune: float | None = Field(None, ge=0.0, lt=1.0, description="unstructured magnitude sparsity per layer")
    structured: float | None = Field(None, gt=0.0, lt=1.0, description="fraction of hidden neurons removed")
    qat_bits: int | Literal["auto"] | None = None
    state_bits: int | None = Field(None, ge=2, le=32)
    finetune_epochs: int = Field(1, ge=0, le=100)
    finetune_lr: float = Field(2e-3, gt=0.0, le=MAX_LR)
    deploy: Literal["last", "baseline", "structured", "pruned", "qat", "state"] = "last"

    @field_validator("qat_bits")
    @classmethod
    def _bits(cls, v: int | str | None) -> int | str | None:
        if isinstance(v, int) and not 2 <= v <= 16:
            raise ValueError(f"must be 'auto' or an integer in 2..16, got {v}")
        return v

    @model_validator(mode="after")
    def _deployable(self) -> CompressSpec:
        applied = {"structured": self.structured, "pruned": self.prune, "qat": self.qat_bits, "state": self.state_bits}
        if self.deploy in applied and applied[self.deploy] is None:
            raise ValueError(f"deploy: variant {self.deploy!r} is not produced (its compress field is not set)")
        return self


class GoldenSpec(_Strict):
    """Golden equivalence (stage 7): test samples run through each kind's reference, if it has one."""

    samples: int = Field(4, ge=0, le=256, description="0 skips the golden stage")


class FloatRange(_Strict):
    """A continuous search range ``[low, high]`` (``log`` samples log-uniformly)."""

    low: float
    high: float
    log: bool = False

    @model_validator(mode="after")
    def _ordered(self) -> FloatRange:
        if not self.low <= self.high:
            raise ValueError(f"low ({self.low}) must be <= high ({self.high})")
        if self.log and self.low <= 0:
            raise ValueError("log ranges need low > 0")
        return self


class ParamRange(FloatRange):
    """A range for one model-factory parameter (``search_space.model_params``): integer ``low`` and
    ``high`` sample integers (layer sizes, kernels), any float samples floats."""

    low: int | float
    high: int | float

    @property
    def integer(self) -> bool:
        """Whether the range samples integers (both ends written as integers)."""
        return isinstance(self.low, int) and isinstance(self.high, int)


class SearchSpaceSpec(_Strict):
    """What ``fabric tune`` may vary (issue #7); a field left out keeps the spec's own value.

    Lists are choices, ``{low, high}`` are ranges. ``weight_bits`` quantizes the trained weights
    (symmetric, per layer) before export and is passed to kinds that take a ``weight_bits`` compile
    option; ``sparsity`` zeroes that fraction of the smallest-magnitude weights before export.
    """

    timesteps: list[int] | None = Field(None, min_length=1)
    encoder_params: dict[str, FloatRange | list[float]] | None = None
    beta: FloatRange | None = None
    threshold: FloatRange | None = None
    hidden: list[list[int]] | None = Field(None, min_length=1, description="choices of hidden-layer size lists")
    weight_bits: list[int] | None = Field(None, min_length=1)
    sparsity: FloatRange | None = None
    lr: FloatRange | None = None
    # issue #19 item 3: each of these changes what is trained or exported
    encoder: list[str] | None = Field(None, min_length=1, description="encoder choices (each with its defaults)")
    sparsity_kind: list[Literal["unstructured", "structured"]] | None = Field(
        None, min_length=1, description="how sparsity is applied: smallest weights, or whole hidden neurons")
    rate_reg: FloatRange | None = Field(None, description="train.rate_reg range (spike-rate regulariser)")
    exit_reg: FloatRange | None = Field(None, description="train.exit_reg range (early-exit regulariser)")
    early_exit_patience: list[int] | None = Field(None, min_length=1, description="Top-K cutoff patience choices")
    layer_beta: FloatRange | None = Field(None, description="each layer samples its own beta (model.betas) from this range")
    layer_threshold: FloatRange | None = Field(
        None, description="each layer samples its own threshold (model.thresholds) from this range")
    state_bits: list[int] | None = Field(None, min_length=1, description="compress.state_bits choices: membrane "
                                         "precision the model is fine-tuned at (state-quantized forward pass)")
    # issue #15 item 2: a template's (conv_snn, recurrent, cuba_mlp) or a user factory's keyword arguments
    model_params: dict[str, ParamRange | list[Any]] | None = Field(
        None, description="model.params to search: per name a list of choices or a {low, high} range")

    @field_validator("model_params", mode="before")
    @classmethod
    def _model_params(cls, v: Any) -> Any:
        # checked here, one message per parameter (the union's own errors name both of its branches)
        if not isinstance(v, dict):
            return v
        for name, r in v.items():
            if not str(name).isidentifier():
                raise ValueError(f"{name}: not a keyword-argument name")
            if isinstance(r, dict):
                try:
                    ParamRange.model_validate(r)
                except ValidationError as exc:
                    e = exc.errors()[0]
                    raise ValueError(f"{name}: {_loc(tuple(e['loc'])) + ': ' if e['loc'] else ''}"
                                     f"{e['msg'].removeprefix('Value error, ')}") from None
            elif not isinstance(r, list) or not r:
                raise ValueError(f"{name}: expected a non-empty list of choices or a {{low, high}} range, got {r!r}")
            elif _non_finite(r) is not None:
                raise ValueError(f"{name}{_non_finite(r)} must be a finite number")
        return v

    @field_validator("encoder")
    @classmethod
    def _encoders(cls, v: list[str] | None) -> list[str] | None:
        from fabric.data.encode import ENCODERS

        for i, name in enumerate(v or []):
            if name not in ENCODERS:
                raise ValueError(f"encoder[{i}]: unknown encoder {name!r}; valid: {sorted(ENCODERS)}")
        return v

    @field_validator("rate_reg", "exit_reg")
    @classmethod
    def _loss_weight(cls, v: FloatRange | None) -> FloatRange | None:
        if v is not None and not (0.0 <= v.low and v.high <= MAX_LOSS_WEIGHT):
            raise ValueError(f"range must lie inside [0, {MAX_LOSS_WEIGHT}], got [{v.low}, {v.high}]")
        return v

    @field_validator("early_exit_patience")
    @classmethod
    def _patience(cls, v: list[int] | None) -> list[int] | None:
        for i, p in enumerate(v or []):
            if not 1 <= p <= 10_000:
                raise ValueError(f"early_exit_patience[{i}] must be in 1..10000, got {p}")
        return v

    @field_validator("timesteps")
    @classmethod
    def _steps(cls, v: list[int] | None) -> list[int] | None:
        for i, t in enumerate(v or []):
            if not 0 < t <= 10_000:
                raise ValueError(f"timesteps[{i}] must be in 1..10000, got {t}")
        return v

    @field_validator("hidden")
    @classmethod
    def _layers(cls, v: list[list[int]] | None) -> list[list[int]] | None:
        for i, choice in enumerate(v or []):
            if not choice or any(h <= 0 or h > MAX_LAYER_SIZE for h in choice):
                raise ValueError(f"hidden[{i}] must be a non-empty list of sizes in 1..{MAX_LAYER_SIZE}, got {choice}")
        return v

    @field_validator("weight_bits")
    @classmethod
    def _bits(cls, v: list[int] | None) -> list[int] | None:
        for i, b in enumerate(v or []):
            if not 1 <= b <= 16:
                raise ValueError(f"weight_bits[{i}] must be in 1..16, got {b}")
        return v

    @field_validator("beta", "layer_beta")
    @classmethod
    def _beta(cls, v: FloatRange | None) -> FloatRange | None:
        if v is not None and not (0.0 < v.low and v.high < 1.0):
            raise ValueError(f"beta range must lie inside (0, 1), got [{v.low}, {v.high}]")
        return v

    @field_validator("threshold", "lr", "layer_threshold")
    @classmethod
    def _positive(cls, v: FloatRange | None) -> FloatRange | None:
        if v is not None and v.low <= 0:
            raise ValueError(f"range must be > 0, got low={v.low}")
        return v

    @field_validator("sparsity")
    @classmethod
    def _sparsity(cls, v: FloatRange | None) -> FloatRange | None:
        if v is not None and not (0.0 <= v.low and v.high < 1.0):
            raise ValueError(f"sparsity range must lie inside [0, 1), got [{v.low}, {v.high}]")
        return v

    @field_validator("state_bits")
    @classmethod
    def _state_bits(cls, v: list[int] | None) -> list[int] | None:
        for i, b in enumerate(v or []):
            if not 2 <= b <= 32:
                raise ValueError(f"state_bits[{i}] must be in 2..32 (as compress.state_bits), got {b}")
        return v

    @model_validator(mode="after")
    def _one_per_layer_or_all(self) -> SearchSpaceSpec:
        for one, per in (("beta", "layer_beta"), ("threshold", "layer_threshold")):
            if getattr(self, one) is not None and getattr(self, per) is not None:
                raise ValueError(f"give one of {one} (one value for every layer) and {per} (one per layer), not both")
        return self

    @model_serializer(mode="wrap")
    def _drop_unset(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # fields left out are not written, so a spec without a search space keeps its hash
        return {k: v for k, v in handler(self).items() if v is not None}


MAX_SLO_MS = 3_600_000.0  # one hour: past this a serving objective is a typo
MAX_SLEEP_AFTER_S = 7 * 24 * 3600.0


class ServeSpec(_Strict):
    """Serving under irregular load (issue #17 item 3, applied by ``serve._private.policy``): when the
    primary kind's queue would break ``slo_p99_ms``, batches spill to the next kind of ``overflow``
    that has a compiled program; a board idle for ``sleep_after_s`` goes to a modelled sleep state."""

    slo_p99_ms: float | None = Field(None, gt=0, le=MAX_SLO_MS, description="serving-latency objective per request")
    overflow: list[str] = Field(default_factory=list, description="kinds to spill to, in order")
    sleep_after_s: float | None = Field(None, gt=0, le=MAX_SLEEP_AFTER_S, description="idle time before a board sleeps")

    @field_validator("overflow")
    @classmethod
    def _kinds(cls, v: list[str]) -> list[str]:
        from fabric.kinds import kinds as registered

        for i, k in enumerate(v):
            if k not in registered():
                raise ValueError(f"entry {i}: unknown device kind {k!r}; valid: {registered()}")
        if len(set(v)) != len(v):
            raise ValueError(f"overflow: must not repeat a kind, got {v}")
        return v

    @model_validator(mode="after")
    def _slo_for_overflow(self) -> ServeSpec:
        if self.overflow and self.slo_p99_ms is None:
            raise ValueError("overflow: needs slo_p99_ms (the objective that decides a spill)")
        return self

    @model_serializer(mode="wrap")
    def _drop_unset(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        return {k: v for k, v in handler(self).items() if v not in (None, [])}


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
    compress: CompressSpec = Field(default_factory=CompressSpec)
    golden: GoldenSpec = Field(default_factory=GoldenSpec)
    seed: int = Field(0, ge=0, le=MAX_SEED)
    eval_batch_size: int = Field(128, gt=0, le=MAX_BATCH_SIZE)
    search_space: SearchSpaceSpec = Field(default_factory=SearchSpaceSpec)
    repeats: RepeatsSpec = Field(default_factory=RepeatsSpec)
    serve: ServeSpec = Field(default_factory=ServeSpec)

    @model_serializer(mode="wrap")
    def _drop_default_repeats(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # a spec without repeats dumps (and hashes) as before the field existed
        out = handler(self)
        if self.repeats == RepeatsSpec():
            out.pop("repeats", None)
        if self.serve == ServeSpec():  # likewise a spec without a serve section
            out.pop("serve", None)
        return out

    @field_validator("targets")
    @classmethod
    def _kinds(cls, v: list[str]) -> list[str]:
        from fabric.kinds import kinds as registered

        for i, k in enumerate(v):
            if k not in registered():
                raise ValueError(f"targets[{i}]: unknown device kind {k!r}; valid: {registered()}")
        if len(set(v)) != len(v):
            raise ValueError("targets must not repeat a kind")
        return v

    @model_validator(mode="after")
    def _fractions(self) -> Spec:
        if self.dataset.test_fraction + self.dataset.val_fraction >= 1.0:
            raise ValueError("dataset.test_fraction + dataset.val_fraction must be < 1")
        return self

    @model_validator(mode="after")
    def _search_encoder(self) -> Spec:
        from fabric.data.encode import encoder_params

        names = sorted(self.search_space.encoder_params or {})
        if names and self.search_space.encoder is not None:
            raise ValueError("search_space.encoder: searching the encoder choice uses each encoder's default "
                             "params; leave out search_space.encoder_params")
        try:
            encoder_params(self.encoder.name, dict.fromkeys(names, 0))
        except ValueError as exc:
            raise ValueError("search_space.encoder_params: " + str(exc).split(": ", 1)[-1]) from None
        return self

    @model_validator(mode="after")
    def _zero_epochs(self) -> Spec:
        # epochs 0 means "deploy as is", which only a zoo entry's trained weights make sense of
        if self.train.epochs == 0 and self.model.zoo is None:
            raise ValueError("train.epochs: must be >= 1 (0 only with model.zoo: deploy the entry as is)")
        return self

    @model_validator(mode="after")
    def _user_model(self) -> Spec:
        # compression, and Tune's template fields, work on the lif_mlp template only
        src = self.model.source
        if self.search_space.model_params and src != "module":
            what = "the lif_mlp template searches hidden/beta/threshold" if src == "template" else f"a model.{src} model has none"
            raise ValueError(f"search_space.model_params: only for model.module or the conv_snn, recurrent, cuba_mlp "
                             f"templates ({what})")
        if src == "template":
            return self
        c = self.compress
        if any(v is not None for v in (c.prune, c.structured, c.qat_bits, c.state_bits)):
            raise ValueError(f"compress: works on the lif_mlp template only, not on a model.{src} model "
                             "(remove the compress section)")
        fields = [k for k in ("hidden", "beta", "threshold", "layer_beta", "layer_threshold", "state_bits")
                  if getattr(self.search_space, k) is not None]
        if fields:
            raise ValueError(f"search_space.{fields[0]}: a lif_mlp template setting; a model.{src} model has its own")
        if "structured" in (self.search_space.sparsity_kind or []):
            raise ValueError(f"search_space.sparsity_kind: 'structured' removes hidden neurons of the lif_mlp template; "
                             f"a model.{src} model takes 'unstructured' only")
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


def _dig(value: Any, path: str) -> Any:
    """The value at a ``_non_finite`` path (for the message)."""
    import re

    try:
        for part in re.findall(r"[^.\[\]]+", path):
            value = value[int(part)] if isinstance(value, list | tuple) else value[part]
    except (KeyError, IndexError, ValueError, TypeError):  # a key holding '.', '[' or ']' (found by fuzzing)
        return "a non-finite value"
    return value


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
            loc = tuple(e["loc"])
            if e["type"] == "encoder_param":  # name the parameter itself: encoder.params.X
                loc += (e["ctx"]["param"],)
            errs.append((_loc(loc), msg))
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
