"""Irregular load (issue #17 item 3): the serving policy, the spill decision and the board sleep state.

Pure Python, no Ray, so every rule is unit tested on its own; the ingress (``serve._private.ingress``)
feeds it queue depths and clock readings.

- :class:`ServePolicy` is the spec's / deploy request's ``serve:`` section: ``slo_p99_ms`` (the
  serving-latency objective), ``overflow`` (kinds to spill to, in order) and ``sleep_after_s``.
- :func:`estimate_ms` predicts a new request's serving time on one kind from its queue depth:
  ``(batches ahead + 1) x per-batch service time`` (+ the wake latency of a sleeping board), and
  :func:`choose_kind` picks the first kind of ``[primary, *overflow]`` whose estimate keeps the
  SLO; when none does, the one with the smallest estimate (the least harm).
- :class:`ServiceClock` measures the per-batch service time from answered requests.
- :class:`SleepState` is one board's awake/asleep machine: idle for ``sleep_after_s`` -> asleep
  (modelled sleep power), woken by the next request (modelled wake latency), with the idle and
  sleep energy it accrued. Power and wake figures come from the kind's ``constants.yaml``
  (``p_idle_w``, ``p_sleep_w``, ``t_wake_s``; each with its source and low/high band).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ServePolicy", "PolicyError", "BoardPower", "ServiceClock", "SleepState", "Target", "Route", "estimate_ms",
           "batches_ahead", "choose_kind", "board_power", "MAX_SLO_MS", "MAX_SLEEP_AFTER_S"]

MAX_SLO_MS = 3_600_000.0  # one hour: past this an SLO is a typo
MAX_SLEEP_AFTER_S = 7 * 24 * 3600.0  # a week


class PolicyError(ValueError):
    """A ``serve:`` section that cannot be used; the message names the field and the constraint."""


@dataclass(frozen=True, kw_only=True)
class ServePolicy:
    """How a version is served under irregular load; every field optional (None / empty: off)."""

    slo_p99_ms: float | None = None
    overflow: tuple[str, ...] = ()
    sleep_after_s: float | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.slo_p99_ms is not None:
            out["slo_p99_ms"] = self.slo_p99_ms
        if self.overflow:
            out["overflow"] = list(self.overflow)
        if self.sleep_after_s is not None:
            out["sleep_after_s"] = self.sleep_after_s
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None, valid_kinds: list[str] | None = None,
                  prefix: str = "serve") -> ServePolicy:
        """Validate at the door: unknown keys, non-positive numbers and unknown kinds are refused
        with one line naming the field (``valid_kinds`` None: kinds are not checked)."""
        d = dict(d or {})
        unknown = sorted(set(d) - {"slo_p99_ms", "overflow", "sleep_after_s"})
        if unknown:
            raise PolicyError(f"{prefix}.{unknown[0]}: unknown field; valid: ['slo_p99_ms', 'overflow', 'sleep_after_s']")
        slo = _positive(d.get("slo_p99_ms"), f"{prefix}.slo_p99_ms", MAX_SLO_MS)
        sleep = _positive(d.get("sleep_after_s"), f"{prefix}.sleep_after_s", MAX_SLEEP_AFTER_S)
        over = d.get("overflow") or []
        if isinstance(over, str) or not isinstance(over, list | tuple):
            raise PolicyError(f"{prefix}.overflow: must be a list of device kinds, got {type(over).__name__}")
        for i, k in enumerate(over):
            if not isinstance(k, str):
                raise PolicyError(f"{prefix}.overflow[{i}]: must be a device kind name, got {type(k).__name__}")
            if valid_kinds is not None and k not in valid_kinds:
                raise PolicyError(f"{prefix}.overflow[{i}]: unknown device kind {k!r}; valid: {valid_kinds}")
        if len(set(over)) != len(over):
            raise PolicyError(f"{prefix}.overflow: must not repeat a kind, got {list(over)}")
        if over and slo is None:
            raise PolicyError(f"{prefix}.overflow: needs slo_p99_ms (the objective that decides a spill)")
        return cls(slo_p99_ms=slo, overflow=tuple(over), sleep_after_s=sleep)

    def chain(self, primary: str) -> list[str]:
        """The kinds a request may run on, in preference order: the primary first."""
        return [primary] + [k for k in self.overflow if k != primary]


def _positive(v: Any, name: str, limit: float) -> float | None:
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise PolicyError(f"{name}: must be a number, got {type(v).__name__}")
    if not math.isfinite(v) or v <= 0:
        raise PolicyError(f"{name}: must be > 0, got {v}")
    if v > limit:
        raise PolicyError(f"{name}: {v} > limit {limit:g}")
    return float(v)


def batches_ahead(in_flight: int, max_batch_size: int) -> int:
    """Batches a new request waits behind: the requests in flight on a kind, in batches of ``max_batch_size``."""
    if max_batch_size < 1:
        raise ValueError("max_batch_size: must be >= 1")
    return math.ceil(max(in_flight, 0) / max_batch_size)


def estimate_ms(depth: int, service_ms: float | None, wake_ms: float = 0.0) -> float:
    """Predicted serving time of a new request: ``(depth + 1) x service_ms + wake_ms``. A kind with no
    measurement yet predicts only its wake time (nothing to extrapolate from: it gets to measure)."""
    if service_ms is None:
        return wake_ms
    return (max(depth, 0) + 1) * service_ms + wake_ms


def choose_kind(chain: list[str], estimates: dict[str, float], slo_ms: float) -> str:
    """The first kind of ``chain`` (primary first) whose estimate is within ``slo_ms``; when every
    estimate breaks it, the smallest (earlier kinds win ties). Kinds missing from ``estimates``
    (no compiled program, not deployed) are never chosen."""
    usable = [k for k in chain if k in estimates]
    if not usable:
        raise ValueError("choose_kind: no kind of the chain has an estimate")
    for k in usable:
        if estimates[k] <= slo_ms:
            return k
    return min(usable, key=lambda k: estimates[k])


class ServiceClock:
    """Per-batch service time of one kind, from answered requests: a request that waited behind ``depth``
    batches took ``elapsed / (depth + 1)`` per batch; smoothed (EWMA) so one outlier does not flip routing."""

    def __init__(self, alpha: float = 0.3) -> None:
        if not 0 < alpha <= 1:
            raise ValueError("alpha: must be in (0, 1]")
        self.alpha = alpha
        self.service_ms: float | None = None
        self.samples = 0

    def observe(self, elapsed_ms: float, depth: int) -> float:
        per_batch = max(elapsed_ms, 0.0) / (max(depth, 0) + 1)
        self.service_ms = per_batch if self.service_ms is None else (
            self.alpha * per_batch + (1 - self.alpha) * self.service_ms)
        self.samples += 1
        return self.service_ms


@dataclass(frozen=True, kw_only=True)
class BoardPower:
    """Modelled power of an idle board awake (``p_idle_w``) and asleep (``p_sleep_w``), and its wake latency."""

    p_idle_w: float
    p_sleep_w: float
    t_wake_s: float

    def __post_init__(self) -> None:
        for name in ("p_idle_w", "p_sleep_w", "t_wake_s"):
            v = getattr(self, name)
            if not math.isfinite(v) or v < 0:
                raise ValueError(f"{name}: must be a finite number >= 0, got {v}")


def board_power(kind: str) -> BoardPower:
    """``p_idle_w`` / ``p_sleep_w`` / ``t_wake_s`` of ``kind`` from ``actors/<kind>/constants.yaml``."""
    from actors.base.energy import load_constants  # the kind's data, read when first used

    c = load_constants(kind)
    missing = [k for k in ("p_idle_w", "p_sleep_w", "t_wake_s") if k not in c.constants]
    if missing:
        raise ValueError(f"kind {kind!r}: constants.yaml lacks {missing} (needed by serve.sleep_after_s)")
    return BoardPower(p_idle_w=c.value("p_idle_w"), p_sleep_w=c.value("p_sleep_w"), t_wake_s=c.value("t_wake_s"))


@dataclass
class SleepState:
    """One board's power state. Call :meth:`begin` when a request starts on it (returns the modelled wake
    latency in seconds, 0 when it was awake), :meth:`end` when it finishes, :meth:`advance` to move the
    clock (status/metrics). Busy time is not accounted here: inference energy covers it. Times are
    seconds on any monotonic clock."""

    sleep_after_s: float
    power: BoardPower
    now: float
    state: str = "awake"
    busy: int = 0
    last_active: float = field(init=False)
    idle_s: float = 0.0
    sleep_s: float = 0.0
    sleeps: int = 0
    wakes: int = 0
    wake_s_total: float = 0.0

    def __post_init__(self) -> None:
        if not math.isfinite(self.sleep_after_s) or self.sleep_after_s <= 0:
            raise ValueError(f"sleep_after_s: must be > 0, got {self.sleep_after_s}")
        self.last_active = self.now

    def advance(self, now: float) -> None:
        """Account the time since the last reading; fall asleep once idle for ``sleep_after_s``."""
        now = max(now, self.now)
        if self.busy == 0 and self.state == "awake":
            fall = self.last_active + self.sleep_after_s
            if now >= fall:
                self.idle_s += max(fall - self.now, 0.0)
                self.state, self.sleeps = "asleep", self.sleeps + 1
                self.sleep_s += now - max(fall, self.now)
            else:
                self.idle_s += now - self.now
        elif self.state == "asleep":
            self.sleep_s += now - self.now
        self.now = now

    def begin(self, now: float) -> float:
        self.advance(now)
        woke = 0.0
        if self.state == "asleep":
            self.state, self.wakes = "awake", self.wakes + 1
            woke = self.power.t_wake_s
            self.wake_s_total += woke
        self.busy += 1
        self.last_active = self.now
        return woke

    def end(self, now: float) -> None:
        self.advance(now)
        self.busy = max(self.busy - 1, 0)
        self.last_active = self.now

    def wake_pending_s(self, now: float) -> float:
        """The wake latency a request arriving at ``now`` would pay (no state change)."""
        asleep = self.state == "asleep" or (self.busy == 0 and now >= self.last_active + self.sleep_after_s)
        return self.power.t_wake_s if asleep else 0.0

    def snapshot(self, now: float) -> dict[str, Any]:
        self.advance(now)
        return {"state": self.state, "sleep_after_s": self.sleep_after_s, "idle_s": self.idle_s,
                "sleep_s": self.sleep_s, "sleeps": self.sleeps, "wakes": self.wakes,
                "wake_ms_total": self.wake_s_total * 1e3, "p_idle_w": self.power.p_idle_w,
                "p_sleep_w": self.power.p_sleep_w, "t_wake_ms": self.power.t_wake_s * 1e3,
                "idle_energy_mj": self.power.p_idle_w * self.idle_s * 1e3,
                "sleep_energy_mj": self.power.p_sleep_w * self.sleep_s * 1e3}


@dataclass(kw_only=True)
class Target:
    """One kind a version can run on: its handle (``infer.remote``), resolved model info, and load."""

    kind: str
    handle: Any
    info: Any = None
    max_batch_size: int = 16
    in_flight: int = 0
    clock: ServiceClock = field(default_factory=ServiceClock)
    served: int = 0

    def depth(self) -> int:
        return batches_ahead(self.in_flight, self.max_batch_size)


@dataclass(kw_only=True)
class Route:
    """A version's targets (the primary kind first, then each overflow kind with a compiled program)
    under its :class:`ServePolicy`; ``boards`` (kind -> :class:`SleepState`, shared by the versions of an
    ingress) add their pending wake latency to the estimate and are woken by :meth:`begin`."""

    policy: ServePolicy
    primary: str
    targets: dict[str, Target]
    skipped: dict[str, str] = field(default_factory=dict)  # overflow kinds left out, and why

    def estimates(self, boards: dict[str, SleepState], now: float) -> dict[str, float]:
        out = {}
        for k, t in self.targets.items():
            wake_ms = boards[k].wake_pending_s(now) * 1e3 if k in boards else 0.0
            out[k] = estimate_ms(t.depth(), t.clock.service_ms, wake_ms)
        return out

    def pick(self, boards: dict[str, SleepState], now: float) -> Target:
        """The target for the next request: the primary unless its estimate breaks the SLO."""
        if self.policy.slo_p99_ms is None or len(self.targets) == 1:
            return self.targets[self.primary]
        est = self.estimates(boards, now)
        return self.targets[choose_kind(self.policy.chain(self.primary), est, self.policy.slo_p99_ms)]

    def begin(self, boards: dict[str, SleepState], now: float) -> tuple[Target, int, float]:
        """Pick a target and start a request on it: ``(target, depth it waits behind, wake seconds)``."""
        t = self.pick(boards, now)
        depth = t.depth()
        wake_s = boards[t.kind].begin(now) if t.kind in boards else 0.0
        t.in_flight += 1
        return t, depth, wake_s

    def end(self, boards: dict[str, SleepState], t: Target, depth: int, elapsed_ms: float | None,
            now: float) -> None:
        """A request on ``t`` finished (``elapsed_ms`` None: it failed, nothing measured)."""
        t.in_flight = max(t.in_flight - 1, 0)
        if t.kind in boards:
            boards[t.kind].end(now)
        if elapsed_ms is not None:
            t.clock.observe(elapsed_ms, depth)
            t.served += 1

    def status(self) -> dict[str, Any]:
        return {"policy": self.policy.to_dict(), "primary": self.primary, "skipped": dict(self.skipped),
                "targets": {k: {"in_flight": t.in_flight, "service_ms": t.clock.service_ms, "served": t.served,
                                "program_id": getattr(t.info, "program_id", None)}
                            for k, t in self.targets.items()}}
