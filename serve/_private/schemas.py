"""Request bodies (pydantic, so the OpenAPI schema documents them) and the array checks behind them.

Every rejection is a :class:`RequestProblem` with an HTTP status in the 4xx range and a one-line
message that names the field; nothing a client sends can reach a device runtime unchecked.
"""

from __future__ import annotations

import io
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, StrictInt

__all__ = ["RequestProblem", "PredictRequest", "FeedbackRequest", "DeployRequest", "StreamFields", "TrafficRequest",
           "RollbackRequest", "SnapshotRequest", "PolicyFields", "ServeFields", "to_array", "check_spikes", "check_inputs",
           "parse_npy", "MAX_JSON_SAMPLES", "MAX_NPY_SAMPLES", "MAX_BODY_BYTES", "MAX_JSON_DEPTH",
           "MAX_ARRAY_ELEMENTS"]

MAX_JSON_SAMPLES = 256
MAX_NPY_SAMPLES = 1024
MAX_BODY_BYTES = 8 * 1024 * 1024  # every body, chunked or not (serve._private.ingress.BodyLimit)
MAX_JSON_DEPTH = 16  # nesting of a JSON body; a request needs at most 1 + 1 + len(input_shape)
MAX_ARRAY_ELEMENTS = 4 * 1024 * 1024  # numbers in one inputs/spikes array or .npy body
VERSION_RE = r"^[A-Za-z0-9_.-]{1,64}$"


class RequestProblem(ValueError):
    """A client error: ``status`` (400/401/404/409/413/415/422) and a message naming the field."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PredictRequest(_Body):
    """Exactly one of ``inputs`` (raw samples; the model's encoder runs server side) or ``spikes``."""

    inputs: list[Any] | None = Field(None, description="raw samples [N, *input_shape], numbers")
    spikes: list[Any] | None = Field(None, description="spike tensors [N, T, n_in] of 0/1")
    version: str | None = Field(None, pattern=VERSION_RE, description="pin a version (default: traffic split)")


class FeedbackRequest(_Body):
    request_id: str = Field(min_length=1, max_length=64)
    labels: list[StrictInt] = Field(min_length=1, max_length=MAX_NPY_SAMPLES, description="true class index per sample")


class PolicyFields(_Body):
    min_requests: int | None = Field(None, ge=1)
    min_feedback: int | None = Field(None, ge=1)
    max_error_rate: float | None = Field(None, ge=0, le=1)
    max_serving_p99_ms: float | None = Field(None, gt=0)


class StreamFields(_Body):
    reset: Literal["never", "per_chunk", "every_n"] = Field("never", description="when a streaming session's "
                                                         "network state goes back to rest")
    every_n: int = Field(1, ge=1, le=1_000_000, description="chunks between resets (reset: every_n)")


class ServeFields(_Body):
    """Irregular load (serve._private.policy); kinds are checked against the registry in the deploy route."""

    slo_p99_ms: float | None = Field(None, gt=0, le=3_600_000, description="serving-latency objective (ms)")
    overflow: list[str] = Field(default_factory=list, max_length=16, description="kinds to spill to, in order")
    sleep_after_s: float | None = Field(None, gt=0, le=7 * 24 * 3600, description="idle seconds before a board sleeps")


class DeployRequest(_Body):
    model_id: str = Field(min_length=6, max_length=64, description="deployment, program, model or nir artifact id")
    kind: str | None = Field(None, description="device kind; required for model/nir ids")
    replicas: int = Field(1, ge=1, le=8)
    role: Literal["primary", "canary", "shadow"] = "primary"
    weight: float | None = Field(None, ge=0, lt=1, description="canary traffic weight")
    version: str | None = Field(None, pattern=VERSION_RE)
    kpis: dict[str, float] | None = Field(None, description="override the spec's KPI thresholds for this version")
    max_batch_size: int = Field(16, ge=1, le=256)
    batch_wait_timeout_s: float = Field(0.005, ge=0, le=1)
    placement: Literal["auto", "pool", "replica", "ingress"] = Field(
        "auto", description="pool: shared device actors; replica: runtime inside the replica, claiming a share of "
                            "the device; ingress: runtime inside the ingress (no device resource only); auto: "
                            "ingress for kinds without a device resource and 1 replica, replica with more, else pool")
    policy: PolicyFields | None = None
    stream: StreamFields | None = Field(None, description="streaming sessions (/v1/stream): reset policy")
    serve: ServeFields | None = Field(None, description="overflow to other kinds past an SLO, board sleep when "
                                                        "idle (default: the spec's serve section)")


class TrafficRequest(_Body):
    version: str = Field(pattern=VERSION_RE)
    role: Literal["primary", "canary", "shadow"]
    weight: float | None = Field(None, ge=0, lt=1)


class RollbackRequest(_Body):
    version: str | None = Field(None, pattern=VERSION_RE)
    reason: str = Field("manual", max_length=200)


class SnapshotRequest(_Body):
    version: str | None = Field(None, pattern=VERSION_RE)
    labelled: bool = False  # store the labelled feedback (spikes + labels) instead of recent inputs


def to_array(value: list[Any], field: str, max_samples: int = MAX_JSON_SAMPLES) -> np.ndarray:
    """Nested JSON lists -> a numeric array, or a RequestProblem naming ``field``."""
    if len(value) == 0:
        raise RequestProblem(422, f"{field}: must hold at least one sample")
    if len(value) > max_samples:
        raise RequestProblem(413, f"{field}: {len(value)} samples > limit {max_samples} per request (use /v1/predict.npy "
                                  "for larger batches)")
    try:
        arr = np.asarray(value)
    except (ValueError, TypeError, RecursionError, OverflowError):
        raise RequestProblem(422, f"{field}: not a rectangular array (rows of different lengths or mixed nesting)") from None
    return _numeric(_bounded(arr, field), field)


def _bounded(arr: np.ndarray, field: str) -> np.ndarray:
    if arr.size > MAX_ARRAY_ELEMENTS:
        raise RequestProblem(413, f"{field}: {arr.size} numbers > limit {MAX_ARRAY_ELEMENTS} per request")
    return arr


def _numeric(arr: np.ndarray, field: str) -> np.ndarray:
    if arr.dtype.kind not in "biuf":
        raise RequestProblem(422, f"{field}: must contain only numbers, got {arr.dtype.kind!r} data "
                                  "(strings, nulls, objects or ragged rows)")
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise RequestProblem(422, f"{field}: contains NaN or infinity")
    return arr


def check_spikes(arr: np.ndarray, timesteps: int, n_in: int, field: str = "spikes") -> np.ndarray:
    """Spikes must be ``[N, timesteps, n_in]`` of 0/1; returns uint8."""
    if arr.ndim != 3 or arr.shape[1:] != (timesteps, n_in):
        raise RequestProblem(422, f"{field}: shape must be [N, {timesteps}, {n_in}] (samples, timesteps, inputs), "
                                  f"got {list(arr.shape)}")
    if arr.shape[0] == 0:
        raise RequestProblem(422, f"{field}: must hold at least one sample")
    if not np.isin(arr, (0, 1)).all():
        raise RequestProblem(422, f"{field}: values must be 0 or 1 (binary spikes)")
    return arr.astype(np.uint8)


def check_inputs(arr: np.ndarray, input_shape: list[int] | None, field: str = "inputs") -> np.ndarray:
    """Raw samples must be ``[N, *input_shape]`` finite numbers; returns float32."""
    if input_shape is None:
        raise RequestProblem(422, f"{field}: this model version has no stored raw-input shape; send spikes")
    if list(arr.shape[1:]) != list(input_shape) or arr.ndim != len(input_shape) + 1:
        raise RequestProblem(422, f"{field}: shape must be [N, {', '.join(map(str, input_shape))}], got {list(arr.shape)}")
    if arr.shape[0] == 0:
        raise RequestProblem(422, f"{field}: must hold at least one sample")
    with np.errstate(over="ignore", invalid="ignore"):
        out = arr.astype(np.float32)
    if not np.isfinite(out).all():
        raise RequestProblem(422, f"{field}: values overflow float32")
    return out


def parse_npy(body: bytes, max_samples: int = MAX_NPY_SAMPLES) -> np.ndarray:
    """An ``application/octet-stream`` .npy body -> array (no pickles), or a RequestProblem."""
    if not body:
        raise RequestProblem(400, "body: empty; send a .npy file (numpy.save) as application/octet-stream")
    try:
        arr = np.load(io.BytesIO(body), allow_pickle=False)
    except Exception:  # numpy raises ValueError/OSError/EOFError/... for bad headers
        raise RequestProblem(400, "body: not a valid .npy file (numpy.save format, no pickled objects)") from None
    if not isinstance(arr, np.ndarray):
        raise RequestProblem(400, "body: an .npz archive is not accepted; send one .npy array")
    if arr.ndim == 0:
        raise RequestProblem(422, "body: a scalar array; expected [N, ...] samples")
    if arr.shape[0] > max_samples:
        raise RequestProblem(413, f"body: {arr.shape[0]} samples > limit {max_samples} per request")
    return _numeric(_bounded(arr, "body"), "body")
