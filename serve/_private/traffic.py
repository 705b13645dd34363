"""Which version answers a request: roles, weights and the rollout transitions between them.

Pure Python so the rules (canary by weight, shadow copy, blue-green switch, rollback) are unit
tested without Ray. Every transition returns a *step* dict that the ingress stores as a ``rollout``
artifact, so the history of a deployment is in the registry, signed.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["TrafficError", "VersionState", "TrafficState", "ROLES"]

ROLES = ("primary", "canary", "shadow", "standby", "rolled_back")


class TrafficError(ValueError):
    """A traffic change that is not allowed; ``status`` is the HTTP code to answer with."""

    def __init__(self, message: str, status: int = 409) -> None:
        super().__init__(message)
        self.status = status


@dataclass(kw_only=True)
class VersionState:
    name: str
    model_id: str
    kind: str
    app_name: str
    role: str
    weight: float = 0.0
    kpis: dict[str, Any] = field(default_factory=dict)
    program_id: str | None = None
    placement: str = "pool"
    replicas: int = 1

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class TrafficState:
    """Versions of one app and their traffic weights; exactly one primary once anything is deployed."""

    def __init__(self, seed: int | None = None) -> None:
        self.versions: dict[str, VersionState] = {}
        self.previous_primary: str | None = None
        self._rng = random.Random(seed)

    # -- queries -----------------------------------------------------------------------------
    @property
    def primary(self) -> VersionState | None:
        return next((v for v in self.versions.values() if v.role == "primary"), None)

    def get(self, name: str) -> VersionState:
        try:
            return self.versions[name]
        except KeyError:
            raise TrafficError(f"version: unknown version {name!r}; deployed: {sorted(self.versions)}", 404) from None

    def weights(self) -> dict[str, float]:
        return {n: round(v.weight, 6) for n, v in self.versions.items()}

    def shadows(self) -> list[VersionState]:
        return [v for v in self.versions.values() if v.role == "shadow"]

    def candidates(self) -> list[VersionState]:
        """Versions under evaluation (canary or shadow): the ones the monitor may roll back."""
        return [v for v in self.versions.values() if v.role in ("canary", "shadow")]

    def choose(self, u: float | None = None) -> VersionState:
        """Pick the version for one request by weight (``u`` in [0, 1) for tests, else random)."""
        live = [v for v in self.versions.values() if v.role in ("primary", "canary") and v.weight > 0]
        if not live:
            raise TrafficError("no version is deployed yet (POST /admin/deploy)", 503)
        u = self._rng.random() if u is None else u
        total = sum(v.weight for v in live)
        acc = 0.0
        for v in live:
            acc += v.weight / total
            if u < acc:
                return v
        return live[-1]

    def next_name(self) -> str:
        i = len(self.versions) + 1
        while f"v{i}" in self.versions:
            i += 1
        return f"v{i}"

    # -- transitions (each returns the step to record) ------------------------------------------
    def _step(self, action: str, frm: str | None, to: str | None, reason: str = "") -> dict[str, Any]:
        return {"action": action, "from_version": frm, "to_version": to, "weights": self.weights(), "reason": reason,
                "roles": {n: v.role for n, v in self.versions.items()}}

    def add(self, v: VersionState, weight: float | None = None) -> dict[str, Any]:
        if v.name in self.versions:
            raise TrafficError(f"version: {v.name!r} already exists", 409)
        if v.role not in ("primary", "canary", "shadow"):
            raise TrafficError(f"role: must be primary, canary or shadow, got {v.role!r}", 422)
        old = self.primary
        if v.role != "primary" and old is None:
            raise TrafficError("role: the first version must be the primary", 409)
        self.versions[v.name] = v
        v.weight = 0.0
        if v.role == "primary":
            v.role = "standby"
            return self.promote(v.name, action="deploy")
        if v.role == "canary":
            v.role = "standby"
            return self.set_canary(v.name, 0.1 if weight is None else weight, action="deploy-canary")
        return self._step("deploy-shadow", old.name if old else None, v.name)

    def set_canary(self, name: str, weight: float, action: str = "canary") -> dict[str, Any]:
        v, p = self.get(name), self.primary
        if not 0.0 <= weight < 1.0:
            raise TrafficError(f"weight: canary weight must be in [0, 1), got {weight}", 422)
        if p is None or p.name == name:
            raise TrafficError(f"version: {name!r} is the primary; a canary must be another version", 409)
        for other in self.versions.values():  # one canary at a time
            if other.role == "canary" and other.name != name:
                other.role, other.weight = "standby", 0.0
        v.role, v.weight = "canary", float(weight)
        p.weight = 1.0 - float(weight)
        return self._step(action, p.name, name)

    def set_shadow(self, name: str) -> dict[str, Any]:
        v, p = self.get(name), self.primary
        if p is not None and p.name == name:
            raise TrafficError(f"version: {name!r} is the primary; a shadow must be another version", 409)
        if v.role == "canary" and p is not None:
            p.weight = 1.0
        v.role, v.weight = "shadow", 0.0
        return self._step("shadow", p.name if p else None, name)

    def promote(self, name: str, action: str = "promote") -> dict[str, Any]:
        """Blue-green switch: ``name`` takes all traffic; the old primary stays warm as standby."""
        v, old = self.get(name), self.primary
        if old is not None and old.name == name:
            raise TrafficError(f"version: {name!r} is already the primary", 409)
        if v.role == "rolled_back":
            raise TrafficError(f"version: {name!r} was rolled back; deploy it again to retry it", 409)
        if old is not None:
            old.role, old.weight = "standby", 0.0
            self.previous_primary = old.name
        for other in self.versions.values():
            if other.role == "canary":
                other.role, other.weight = "standby", 0.0
        v.role, v.weight = "primary", 1.0
        return self._step(action, old.name if old else None, name)

    def rollback(self, name: str | None = None, reason: str = "manual") -> dict[str, Any]:
        """Take a canary/shadow out of service, or (no candidate) switch back to the previous primary."""
        cands = self.candidates()
        if name is None and cands:
            name = cands[0].name
        if name is not None and self.get(name).role in ("canary", "shadow"):
            v, p = self.versions[name], self.primary
            v.role, v.weight = "rolled_back", 0.0
            if p is not None:
                p.weight = 1.0
            return self._step("rollback", name, p.name if p else None, reason)
        prev = self.previous_primary
        cur = self.primary
        if name is not None and cur is not None and name != cur.name:
            raise TrafficError(f"version: {name!r} is {self.versions[name].role}, nothing to roll back", 409)
        if prev is None or prev not in self.versions or cur is None:
            raise TrafficError("nothing to roll back: no canary, shadow or previous primary", 409)
        cur.role, cur.weight = "rolled_back", 0.0
        self.versions[prev].role, self.versions[prev].weight = "primary", 1.0
        self.previous_primary = None
        return self._step("rollback", cur.name, prev, reason)
