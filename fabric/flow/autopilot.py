"""The closed retrain loop (NMLOps stage 9: monitor -> retrain -> canary -> promote or roll back) as a
pure state machine.

Why pure: the decisions (what counts as a trigger, when a canary has enough evidence, when it is
promoted) are the part that must be right, so they are unit tested without Ray, HTTP or a registry.
The driver (:mod:`fabric.cli.autopilot`) only gathers :class:`Evidence` over HTTP, runs the retrain
as a Ray task, deploys the canary and stores every event the machine emits as a signed artifact.

Phases: ``watching`` -> (trigger) ``retraining`` -> (model ready) ``canary`` -> (verdict) ``watching``.
A trigger is any of: the drift test on recent live inputs says retrain; the primary's live KPIs
break the spec's thresholds; labelled-feedback accuracy is below the gate. The canary is promoted
when it has ``canary_min_requests`` requests and ``canary_min_feedback`` labelled samples and no
breach; it is rolled back on any breach (or when the serving monitor already rolled it back).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["AutopilotPolicy", "Evidence", "Trigger", "Action", "Autopilot", "PHASES", "find_trigger"]

PHASES = ("watching", "retraining", "canary")


@dataclass(kw_only=True)
class AutopilotPolicy:
    """What triggers a retrain and how much evidence a canary needs before its verdict."""

    drift: bool = True  # the drift test's own retrain decision (fabric.flow.drift.DriftPolicy) triggers
    kpi_breach: bool = True  # a breach of the primary's live KPIs triggers
    feedback_gate: float | None = None  # labelled accuracy below this triggers (None: the spec's min_accuracy)
    min_feedback: int = 20  # labelled samples before the feedback gate applies
    min_drift_samples: int = 32  # served samples before the drift test is run
    canary_weight: float = 0.5  # share of traffic the retrained version gets
    canary_min_requests: int = 20
    canary_min_feedback: int = 20
    feedback_repeat: int = 3  # labelled feedback samples count this many times in the retrain set
    epochs: int | None = None  # retrain epochs (None: the spec's train.epochs)

    def __post_init__(self) -> None:
        if self.feedback_gate is not None and not 0.0 <= self.feedback_gate <= 1.0:
            raise ValueError(f"feedback_gate: must be in [0, 1], got {self.feedback_gate}")
        if not 0.0 < self.canary_weight < 1.0:
            raise ValueError(f"canary_weight: must be in (0, 1), got {self.canary_weight}")
        for name in ("min_feedback", "min_drift_samples", "canary_min_requests", "canary_min_feedback"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: must be >= 1, got {getattr(self, name)}")
        if not 1 <= self.feedback_repeat <= 100:
            raise ValueError(f"feedback_repeat: must be in [1, 100], got {self.feedback_repeat}")
        if self.epochs is not None and not 1 <= self.epochs <= 1000:
            raise ValueError(f"epochs: must be in [1, 1000], got {self.epochs}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(kw_only=True)
class Evidence:
    """What the driver saw of the primary: the drift report (or None when not run), the primary's live
    KPI snapshot (``serve._private.kpi.KpiWindow.snapshot``), its breaches and its KPI thresholds."""

    primary: str
    drift: dict[str, Any] | None = None
    snapshot: dict[str, Any] = field(default_factory=dict)
    breaches: list[str] = field(default_factory=list)
    kpis: dict[str, Any] = field(default_factory=dict)
    artifacts: list[str] = field(default_factory=list)  # ids the evidence came from (drift report, snapshots)


@dataclass(kw_only=True)
class Trigger:
    """Why a retrain starts: ``sources`` (drift / kpi / feedback) and one reason per source."""

    sources: list[str]
    reasons: list[str]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(kw_only=True)
class Action:
    """What the driver must do next: ``none``, ``retrain``, ``deploy-canary``, ``wait``, ``promote``,
    ``rollback``, ``record`` (the canary was already rolled back) or ``abandon`` (retrain failed)."""

    do: str
    reason: str = ""
    data: dict[str, Any] = field(default_factory=dict)


def find_trigger(ev: Evidence, policy: AutopilotPolicy) -> Trigger | None:
    """The retrain trigger in ``ev`` under ``policy``, or None (nothing asks for a retrain)."""
    sources, reasons = [], []
    if policy.drift and ev.drift is not None and ev.drift.get("retrain"):
        sources.append("drift")
        reasons.append(f"drift: {ev.drift.get('reason', 'retrain')}")
    if policy.kpi_breach and ev.breaches:
        sources.append("kpi")
        reasons.append("kpi: " + "; ".join(ev.breaches))
    gate = policy.feedback_gate if policy.feedback_gate is not None else ev.kpis.get("min_accuracy")
    acc, n = ev.snapshot.get("accuracy_feedback"), int(ev.snapshot.get("feedback_samples") or 0)
    if gate is not None and acc is not None and n >= policy.min_feedback and acc < gate:
        sources.append("feedback")
        reasons.append(f"feedback: accuracy {acc:.3f} < gate {gate:g} on {n} labelled samples")
    return Trigger(sources=sources, reasons=reasons) if sources else None


class Autopilot:
    """One app's loop: feed it evidence and results, do the :class:`Action` it returns.

    Every transition appends an event (a JSON-ready dict) to ``events``; the driver stores each as a
    signed artifact whose parents are the artifacts the event names, so the history has lineage.
    """

    def __init__(self, policy: AutopilotPolicy | None = None) -> None:
        self.policy = policy or AutopilotPolicy()
        self.phase = "watching"
        self.cycle = 0
        self.base: str | None = None  # primary version the cycle started from
        self.candidate: str | None = None  # canary version name
        self.events: list[dict[str, Any]] = []

    def _event(self, event: str, **data: Any) -> dict[str, Any]:
        e = {"event": event, "cycle": self.cycle, "phase": self.phase} | data
        self.events.append(e)
        return e

    def _expect(self, *phases: str) -> None:
        if self.phase not in phases:
            raise RuntimeError(f"autopilot: in phase {self.phase!r}, expected {' or '.join(phases)}")

    def observe(self, ev: Evidence) -> Action:
        """Watching: a trigger starts a retrain cycle; no trigger changes nothing."""
        self._expect("watching")
        trig = find_trigger(ev, self.policy)
        if trig is None:
            return Action(do="none", reason="no trigger: no drift, no KPI breach, feedback accuracy at or above the gate")
        self.cycle += 1
        self.base = ev.primary
        self.phase = "retraining"
        self._event("trigger", primary=ev.primary, trigger=trig.to_dict(),
                    evidence_artifacts=list(ev.artifacts), snapshot=ev.snapshot)
        return Action(do="retrain", reason="; ".join(trig.reasons), data={"trigger": trig.to_dict()})

    def retrained(self, *, ok: bool, model_id: str | None = None, reason: str = "",
                  artifacts: list[str] | None = None) -> Action:
        """The retrain job's outcome: a servable artifact becomes a canary; a failure ends the cycle."""
        self._expect("retraining")
        if not ok or not model_id:
            self._event("retrain-failed", reason=reason, artifacts=list(artifacts or []))
            self.phase = "watching"
            return Action(do="abandon", reason=f"retrain failed: {reason}")
        self._event("retrained", model_id=model_id, artifacts=list(artifacts or []))
        self.phase = "canary"
        return Action(do="deploy-canary", data={"model_id": model_id, "weight": self.policy.canary_weight})

    def canary_deployed(self, version: str) -> None:
        """The candidate is live as a canary under ``version``."""
        self._expect("canary")
        self.candidate = version
        self._event("canary", version=version, weight=self.policy.canary_weight)

    def judge(self, *, role: str, snapshot: dict[str, Any], breaches: list[str], monitor_reason: str = "") -> Action:
        """The canary's verdict from its role and live KPIs: rollback on a breach, promote once it has
        enough requests and labelled feedback without one, else wait for more evidence.
        ``monitor_reason``: why the serving monitor rolled it back, when it did."""
        self._expect("canary")
        if role == "rolled_back":  # the serving monitor already rolled it back (existing rollout policy)
            why = "rolled back by the serving monitor" + (f": {monitor_reason}" if monitor_reason else "")
            return self._verdict("record", "rolled-back", why, snapshot)
        if role != "canary":
            return self._verdict("record", "superseded", f"canary is now {role} (changed by hand)", snapshot)
        if breaches:
            return self._verdict("rollback", "rolled-back", "automatic: " + "; ".join(breaches), snapshot)
        reqs, fb = int(snapshot.get("requests") or 0), int(snapshot.get("feedback_samples") or 0)
        p = self.policy
        if reqs >= p.canary_min_requests and fb >= p.canary_min_feedback:
            return self._verdict("promote", "promoted", f"no breach on {reqs} requests and {fb} labelled samples",
                                 snapshot)
        return Action(do="wait", reason=f"canary evidence {reqs}/{p.canary_min_requests} requests, "
                                        f"{fb}/{p.canary_min_feedback} labelled samples")

    def timed_out(self, snapshot: dict[str, Any]) -> Action:
        """No verdict within the driver's time: the canary is rolled back (never left half-rolled-out)."""
        self._expect("canary")
        return self._verdict("rollback", "rolled-back", "canary timed out before enough evidence", snapshot)

    def _verdict(self, do: str, verdict: str, reason: str, snapshot: dict[str, Any]) -> Action:
        self._event("verdict", verdict=verdict, version=self.candidate, base=self.base, reason=reason,
                    snapshot=snapshot)
        self.phase = "watching"
        return Action(do=do, reason=reason, data={"verdict": verdict, "version": self.candidate})
