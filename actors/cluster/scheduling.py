"""Board scheduling shared by every driver on a cluster: tenant fairness, quotas, draining, faults.

Why: device actors are shared by pipeline jobs, Tune trials and Serve replicas from many drivers. A
per-pool idle list cannot stop one tenant from flooding a kind's boards, so every batch takes a
*ticket* from one cluster-wide scheduler (a named actor built in :mod:`actors.cluster.pool`). This module is
the plain-Python core of that actor, unit-testable without Ray:

- **fairness**: a free board goes to the waiting tenant that was served least recently (round robin
  between tenants, FIFO within a tenant), so a quiet tenant waits for at most one grant per other
  tenant with queued work, however many batches a noisy tenant has queued;
- **quotas**: per tenant, ``max_concurrent`` boards held at once and a ``device_seconds`` budget of
  measured board-busy time (the actor's wall time inside ``execute``). The limits come from the admin's
  :class:`~actors.cluster.policy.QuotaPolicy` (``FABRIC_QUOTA_POLICY``); a caller's :meth:`set_quota`
  may only lower them (raising is refused with :class:`~actors.cluster.policy.QuotaRefused`);
- **weights**: a tenant with policy ``weight`` w gets w grants in a row per round (default 1);
- **drain**: an unhealthy board gets no new tickets; ``undrain`` (or a healthy report) brings it back;
- **leases**: a ticket may be a *lease* (``request(..., lease=True)``): the holder sends batch after
  batch straight to the board (no scheduler round trip per batch) and the board accounts each one
  (:meth:`BoardScheduler.account`). A lease is recalled (:meth:`BoardScheduler.recall`) as soon as
  another ticket waits for its board, its tenant's budget is spent, its board is drained, or it sat
  idle / grew old; the board acknowledges the recall after its current batch, and only then is the
  board free, so fairness, quotas and "one caller per board" hold as for single-batch tickets;
- **simulated faults** for emulated boards (:class:`SimulatedFault`): ``dead``, ``stuck``, ``slow``.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from typing import Any

from actors.cluster.policy import PolicyError, QuotaPolicy

__all__ = ["Quota", "QuotaExceeded", "DeviceFault", "LeaseRevoked", "SimulatedFault", "BoardScheduler", "FAULT_MODES",
           "LEASE_IDLE_S", "LEASE_MAX_S"]

FAULT_MODES = ("dead", "stuck", "slow")
LEASE_IDLE_S = 2.0  # a lease with no batch for this long is recalled (its holder went quiet)
LEASE_MAX_S = 5.0  # a lease older than this is recalled even if busy (holders renew well before: pool.LEASE_S)


class QuotaExceeded(RuntimeError):
    """A tenant asked for device time beyond its quota (one-line message naming tenant and limit)."""


class DeviceFault(RuntimeError):
    """The board reported a fault while running a batch; the batch is re-queued on another board."""


class LeaseRevoked(RuntimeError):
    """The board refused a batch: the caller's lease on it was recalled (or is unknown); ask for a new one."""


@dataclass(kw_only=True)
class Quota:
    """Per-tenant limits. ``None`` = unlimited. ``device_seconds`` is measured board-busy time."""

    max_concurrent: int | None = None
    device_seconds: float | None = None

    def __post_init__(self) -> None:
        if self.max_concurrent is not None and (not isinstance(self.max_concurrent, int) or self.max_concurrent < 1):
            raise ValueError(f"quota.max_concurrent must be an integer >= 1, got {self.max_concurrent!r}")
        if self.device_seconds is not None and not (float(self.device_seconds) > 0):
            raise ValueError(f"quota.device_seconds must be > 0, got {self.device_seconds!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class SimulatedFault:
    """Fault injection for an emulated board (real boards report their own ``health()``).

    ``dead``: every run raises :class:`DeviceFault`, health is not ok. ``stuck``: a run blocks until the
    fault is cleared (or ``stuck_s`` passes), health is not ok. ``slow``: each run takes ``delay_s`` extra,
    health stays ok but reports ``degraded``.
    """

    def __init__(self) -> None:
        self.mode: str | None = None
        self.delay_s = 0.0
        self.stuck_s = 3600.0
        self._cleared = threading.Event()

    def inject(self, mode: str, delay_s: float = 0.5, stuck_s: float = 3600.0) -> None:
        if mode not in FAULT_MODES:
            raise ValueError(f"fault mode must be one of {FAULT_MODES}, got {mode!r}")
        self.mode, self.delay_s, self.stuck_s = mode, float(delay_s), float(stuck_s)
        self._cleared.clear()

    def clear(self) -> None:
        self.mode = None
        self._cleared.set()

    def before_run(self, device_id: str) -> None:
        """Called by the board before each batch: raise, block or delay as the injected fault says."""
        if self.mode == "dead":
            raise DeviceFault(f"{device_id}: simulated fault 'dead' (board not responding)")
        if self.mode == "stuck":
            self._cleared.wait(self.stuck_s)
            if self.mode == "stuck":
                raise DeviceFault(f"{device_id}: simulated fault 'stuck' (run did not finish in {self.stuck_s}s)")
        if self.mode == "slow":
            time.sleep(self.delay_s)

    def health(self) -> dict[str, Any]:
        ok = self.mode not in ("dead", "stuck")
        return {"ok": ok, "fault": self.mode, "simulated_fault": self.mode is not None,
                "degraded": self.mode == "slow"}


@dataclass
class _Board:
    name: str
    kind: str
    holder: int | None = None  # ticket id currently running on it
    drained: bool = False
    drain_reason: str = ""
    healthy: bool = True
    calls: int = 0
    failures: int = 0
    busy_s: float = 0.0
    tenant_usage: dict[str, dict[str, float]] = field(default_factory=dict)


@dataclass
class _Ticket:
    id: int
    kind: str
    tenant: str
    allowed: frozenset[str]
    owner: str = ""
    board: str | None = None
    granted_at: float = 0.0
    claimed: bool = False
    delivered_at: float | None = None  # the caller has the batch's result; the board's release is due
    lease: bool = False  # many batches, each accounted by the board (see BoardScheduler.account)
    revoking: bool = False  # recalled: no new batch is accepted; the board is freed once it acknowledges
    last_used: float = 0.0  # last accounted batch (or the grant) of a lease


class BoardScheduler:
    """Grants boards to tickets: round robin between tenants, quotas enforced, drained boards skipped."""

    def __init__(self, log_size: int = 10000, policy: QuotaPolicy | None = None) -> None:
        self.boards: dict[str, _Board] = {}
        self.policy = policy or QuotaPolicy()
        self.policy_error: str | None = None  # set while the policy file is bad: no new tickets (fail closed)
        self.quotas: dict[str, Quota] = {}  # what callers asked for (each at most the policy's limits)
        self.streak: dict[tuple[str, str], int] = {}  # (kind, tenant) -> grants so far in its weighted turn
        self.waiting: dict[str, dict[str, deque[_Ticket]]] = {}  # kind -> tenant -> FIFO of tickets
        self.tickets: dict[int, _Ticket] = {}
        self.in_flight: dict[str, int] = {}  # tenant -> boards held now
        self.peak_in_flight: dict[str, int] = {}
        self.busy_s: dict[str, float] = {}  # tenant -> measured board-busy seconds (all kinds)
        self.calls: dict[str, int] = {}
        self.last_served: dict[tuple[str, str], int] = {}  # (kind, tenant) -> grant sequence number
        self.grant_log: deque[tuple[int, str, str, str]] = deque(maxlen=log_size)  # (seq, kind, tenant, board)
        self._ids = itertools.count(1)
        self._seq = itertools.count(1)
        self._arrival: dict[tuple[str, str], int] = {}
        self.lost_releases = 0  # board releases that never arrived (freed by sweep after delivery)

    # -- configuration ----------------------------------------------------------------------------
    def register(self, kind: str, names: list[str]) -> None:
        for n in names:
            self.boards.setdefault(n, _Board(name=n, kind=kind))

    def set_quota(self, tenant: str, quota: Quota | None) -> None:
        """A caller's own limits for ``tenant``: only lower than the policy's (QuotaRefused otherwise);
        ``None`` goes back to the policy's limits."""
        if quota is None:
            self.quotas.pop(tenant, None)
            return
        self.policy.check_lower(tenant, quota.max_concurrent, quota.device_seconds)
        self.quotas[tenant] = quota

    def set_policy(self, policy: QuotaPolicy | None, error: str | None = None) -> None:
        """Apply the admin's policy (re-read from its file); with ``error`` the file is bad and no new
        ticket is granted until it is fixed. Caller quotas stay, each capped by the new policy."""
        if policy is not None:
            self.policy = policy
        self.policy_error = error

    def quota(self, tenant: str) -> Quota:
        """The limits that apply to ``tenant``: the policy's, lowered where the caller asked for less."""
        lim, own = self.policy.limits(tenant), self.quotas.get(tenant)

        def lower(a: Any, b: Any) -> Any:
            return b if a is None else a if b is None else min(a, b)

        if own is None:
            return Quota(max_concurrent=lim.max_concurrent, device_seconds=lim.device_seconds)
        return Quota(max_concurrent=lower(lim.max_concurrent, own.max_concurrent),
                     device_seconds=lower(lim.device_seconds, own.device_seconds))

    def weight(self, tenant: str) -> int:
        return self.policy.limits(tenant).weight

    def drain(self, board: str, reason: str) -> None:
        b = self._board(board)
        b.drained, b.drain_reason = True, reason

    def undrain(self, board: str) -> None:
        b = self._board(board)
        b.drained, b.drain_reason, b.healthy = False, "", True

    def report_health(self, board: str, ok: bool, reason: str = "") -> None:
        """A health probe's verdict: drain an unhealthy board; bring back one drained for health."""
        b = self._board(board)
        b.healthy = ok
        if not ok and not b.drained:
            self.drain(board, reason or "health check failed")
        elif ok and b.drained and b.drain_reason.startswith("unhealthy"):
            self.undrain(board)

    def _board(self, name: str) -> _Board:
        try:
            return self.boards[name]
        except KeyError:
            raise KeyError(f"unknown board {name!r}; registered: {sorted(self.boards)}") from None

    # -- tickets ----------------------------------------------------------------------------------
    def check_quota(self, tenant: str, kind: str) -> None:
        if self.policy_error is not None:
            raise PolicyError(f"{self.policy_error}; no {kind} batches are granted until the admin fixes it")
        q = self.quota(tenant)
        if q.device_seconds is not None and self.busy_s.get(tenant, 0.0) >= q.device_seconds:
            raise QuotaExceeded(
                f"tenant {tenant!r} used {self.busy_s[tenant]:.3f}s of its {q.device_seconds}s device-time quota "
                f"(quota.device_seconds); no more {kind} batches are granted"
            )

    def request(self, kind: str, tenant: str, allowed: list[str] | None = None, owner: str = "",
                lease: bool = False) -> int:
        """Queue a ticket for one batch on ``kind`` (``lease``: for many batches, until recalled or
        given back); raises QuotaExceeded when the budget is spent.

        ``owner`` identifies the caller process, so that its queued tickets can be dropped when it is
        found dead (see :meth:`sweep`)."""
        self.check_quota(tenant, kind)
        names = frozenset(allowed) if allowed else frozenset(b.name for b in self.boards.values() if b.kind == kind)
        if not names:
            raise KeyError(f"no boards of kind {kind!r} are registered with the scheduler")
        t = _Ticket(id=next(self._ids), kind=kind, tenant=tenant, allowed=names, owner=owner, lease=lease)
        self.tickets[t.id] = t
        self.waiting.setdefault(kind, {}).setdefault(tenant, deque()).append(t)
        self._arrival.setdefault((kind, tenant), next(self._seq))
        return t.id

    def cancel(self, ticket: int) -> None:
        t = self.tickets.pop(ticket, None)
        if t is None:
            return
        if t.board is None:
            q = self.waiting.get(t.kind, {}).get(t.tenant)
            if q is not None and t in q:
                q.remove(t)
        else:
            self._free(t)

    def dispatch(self) -> list[tuple[int, str | BaseException]]:
        """Grant every free board it can; returns ``(ticket, board name | QuotaExceeded)`` decisions."""
        out: list[tuple[int, str | BaseException]] = []
        for kind, tenants in self.waiting.items():
            while True:
                free = [b for b in self.boards.values() if b.kind == kind and b.holder is None and not b.drained]
                if not free:
                    break
                cands = []
                for tenant, q in tenants.items():
                    if not q:
                        continue
                    try:
                        self.check_quota(tenant, kind)
                    except (QuotaExceeded, PolicyError) as exc:  # budget spent while waiting: fail its queued tickets
                        while q:
                            t = q.popleft()
                            self.tickets.pop(t.id, None)
                            out.append((t.id, exc))
                        continue
                    quota = self.quota(tenant)
                    if quota.max_concurrent is not None and self.in_flight.get(tenant, 0) >= quota.max_concurrent:
                        continue
                    # the first ticket of this tenant that some free board may serve
                    for t in q:
                        fb = [b for b in free if b.name in t.allowed]
                        if fb:
                            cands.append((self.last_served.get((kind, tenant), 0), self._arrival[(kind, tenant)], t, fb[0]))
                            break
                if not cands:
                    break
                _, _, t, board = min(cands, key=lambda c: (c[0], c[1]))
                tenants[t.tenant].remove(t)
                seq = next(self._seq)
                key = (kind, t.tenant)
                self.streak[key] = self.streak.get(key, 0) + 1
                if self.streak[key] >= self.weight(t.tenant):  # its turn is over: to the back of the round
                    self.last_served[key], self.streak[key] = seq, 0
                board.holder, t.board, t.granted_at = t.id, board.name, time.monotonic()
                t.last_used = t.granted_at
                n = self.in_flight[t.tenant] = self.in_flight.get(t.tenant, 0) + 1
                self.peak_in_flight[t.tenant] = max(self.peak_in_flight.get(t.tenant, 0), n)
                self.grant_log.append((seq, kind, t.tenant, board.name))
                out.append((t.id, board.name))
        return out

    def release(self, ticket: int, busy_s: float = 0.0, ok: bool = True, reason: str = "") -> None:
        """The batch finished (``ok``) or failed on its board (drained with ``reason`` when given)."""
        t = self.tickets.pop(ticket, None)
        if t is None or t.board is None:
            return
        b = self.boards[t.board]
        b.busy_s += busy_s
        self.busy_s[t.tenant] = self.busy_s.get(t.tenant, 0.0) + busy_s  # failed calls used board time too
        if ok:  # calls count completed batches; failures are counted per board
            b.calls += 1
            u = b.tenant_usage.setdefault(t.tenant, {"calls": 0, "busy_s": 0.0})
            u["calls"] += 1
            u["busy_s"] += busy_s
            self.calls[t.tenant] = self.calls.get(t.tenant, 0) + 1
        else:
            b.failures += 1
            if reason:
                b.healthy = False
                self.drain(b.name, f"unhealthy: {reason}")
        self._free(t)

    def account(self, ticket: int, busy_s: float, ok: bool = True, reason: str = "") -> None:
        """One batch of a lease finished on its board: its time and call count go to the tenant as for
        a ticket's :meth:`release`, but the board stays with the lease. A board fault (``ok`` false
        with a ``reason``) drains the board and ends the lease."""
        t = self.tickets.get(ticket)
        if t is None or t.board is None or not t.lease:
            return
        b = self.boards[t.board]
        b.busy_s += busy_s
        self.busy_s[t.tenant] = self.busy_s.get(t.tenant, 0.0) + busy_s
        t.last_used = time.monotonic()
        if ok:
            b.calls += 1
            u = b.tenant_usage.setdefault(t.tenant, {"calls": 0, "busy_s": 0.0})
            u["calls"] += 1
            u["busy_s"] += busy_s
            self.calls[t.tenant] = self.calls.get(t.tenant, 0) + 1
            return
        b.failures += 1
        if reason:
            b.healthy = False
            self.drain(b.name, f"unhealthy: {reason}")
            self.end_lease(ticket)

    def lease_ok(self, ticket: int) -> str | None:
        """The board a live, unrecalled lease holds (a board asks before its first batch of a lease)."""
        t = self.tickets.get(ticket)
        return t.board if t is not None and t.lease and t.board is not None and not t.revoking else None

    def end_lease(self, ticket: int) -> None:
        """The lease is over (given back by its holder, or the board acknowledged its recall): free the
        board. Its batches were accounted one by one, so nothing is added here."""
        t = self.tickets.pop(ticket, None)
        if t is not None and t.board is not None:
            self._free(t)

    def recall(self, now: float | None = None, idle_s: float = LEASE_IDLE_S,
               max_s: float = LEASE_MAX_S) -> list[tuple[int, str]]:
        """Leases to take back now, as ``(ticket, board)``; each is marked ``revoking`` (reported once).

        A lease is recalled when another ticket waits for its board (any tenant: the waiting one gets
        the board next, by the usual round robin), its board is drained, its tenant's quota is spent
        or the policy is bad, it had no batch for ``idle_s``, or it is older than ``max_s``."""
        now = time.monotonic() if now is None else now
        wanted: set[str] = set()  # boards some waiting ticket may use (one its quota lets it take)
        for tenants in self.waiting.values():
            for tenant, q in tenants.items():
                cap = self.quota(tenant).max_concurrent
                if not q or (cap is not None and self.in_flight.get(tenant, 0) >= cap):
                    continue
                for w in q:
                    wanted |= w.allowed
        out: list[tuple[int, str]] = []
        for t in self.tickets.values():
            if not t.lease or t.board is None or t.revoking:
                continue
            try:
                self.check_quota(t.tenant, t.kind)
                spent = False
            except (QuotaExceeded, PolicyError):
                spent = True
            if (t.board in wanted or self.boards[t.board].drained or spent
                    or now - t.last_used > idle_s or now - t.granted_at > max_s):
                t.revoking = True
                out.append((t.id, t.board))
        return out

    def claim(self, ticket: int) -> None:
        """The caller received the grant (it is alive and is sending the batch to the board)."""
        t = self.tickets.get(ticket)
        if t is not None:
            t.claimed = True

    def delivered(self, ticket: int, now: float | None = None) -> None:
        """The caller received the batch's result (or error): the board is done with this ticket.

        The board returns its ticket itself (with the measured busy time); this mark lets :meth:`sweep`
        free the board when that release was lost, e.g. the board actor was killed right after the
        call returned, before its fire-and-forget release left the process.
        """
        t = self.tickets.get(ticket)
        if t is not None and t.board is not None:
            t.delivered_at = time.monotonic() if now is None else now

    def sweep(self, claim_timeout_s: float = 60.0, now: float | None = None,
              release_grace_s: float = 10.0) -> list[int]:
        """Reclaim boards granted to callers that never used them (the caller died after queueing),
        and boards whose release was lost after the caller got its result.

        A grant not claimed within ``claim_timeout_s`` frees its board, and every other ticket still
        queued by the same owner is dropped (that caller is gone). A ticket delivered to its caller
        more than ``release_grace_s`` ago whose board never returned it is released (no busy time is
        known for it; counted in ``lost_releases``). Returns the dropped ticket ids.
        """
        now = time.monotonic() if now is None else now
        for t in list(self.tickets.values()):
            if t.board is not None and t.delivered_at is not None and now - t.delivered_at > release_grace_s:
                self.lost_releases += 1
                self.release(t.id, 0.0, True, "")
        dead_owners: set[str] = set()
        dropped: list[int] = []
        for t in list(self.tickets.values()):
            if t.board is not None and not t.claimed and now - t.granted_at > claim_timeout_s:
                dead_owners.add(t.owner)
                self.tickets.pop(t.id, None)
                self._free(t)
                dropped.append(t.id)
        for t in list(self.tickets.values()):
            if t.board is None and t.owner in dead_owners and t.owner:
                self.cancel(t.id)
                dropped.append(t.id)
        return dropped

    def held_owners(self, older_than_s: float, now: float | None = None) -> set[str]:
        """Owners of board grants older than ``older_than_s`` (claimed or not): the reaper asks Ray
        whether these callers still live. A claimed grant whose caller died before its call reached the
        board is never released by the board, so ``sweep`` alone cannot free it."""
        now = time.monotonic() if now is None else now
        return {t.owner for t in self.tickets.values()
                if t.board is not None and t.owner and now - t.granted_at > older_than_s}

    def forget_owner(self, owner: str) -> list[int]:
        """A caller is known dead: free every board it holds and drop its queued tickets."""
        dropped = [t.id for t in self.tickets.values() if t.owner == owner]
        for tid in dropped:
            self.cancel(tid)
        return dropped

    def _free(self, t: _Ticket) -> None:
        b = self.boards.get(t.board or "")
        if b is not None and b.holder == t.id:
            b.holder = None
        self.in_flight[t.tenant] = max(0, self.in_flight.get(t.tenant, 0) - 1)

    # -- reporting --------------------------------------------------------------------------------
    def queued(self, kind: str | None = None) -> dict[str, int]:
        """Waiting tickets per kind."""
        return {k: sum(len(q) for q in ts.values()) for k, ts in self.waiting.items() if kind in (None, k)}

    def _holder(self, b: _Board, now: float) -> dict[str, Any] | None:
        t = self.tickets.get(b.holder) if b.holder is not None else None
        if t is None:
            return None
        return {"ticket": t.id, "tenant": t.tenant, "owner": t.owner, "claimed": t.claimed,
                "held_s": round(now - t.granted_at, 3), "delivered": t.delivered_at is not None,
                "lease": t.lease, "revoking": t.revoking}

    def status(self) -> dict[str, Any]:
        now = time.monotonic()
        boards = {n: {"kind": b.kind, "busy": b.holder is not None, "drained": b.drained, "drain_reason": b.drain_reason,
                      "healthy": b.healthy, "calls": b.calls, "failures": b.failures, "busy_s": b.busy_s,
                      "holder": self._holder(b, now),
                      "tenant_usage": {k: dict(v) for k, v in b.tenant_usage.items()}}
                  for n, b in self.boards.items()}
        tenants = {t: {"calls": self.calls.get(t, 0), "busy_s": self.busy_s.get(t, 0.0),
                       "in_flight": self.in_flight.get(t, 0), "peak_in_flight": self.peak_in_flight.get(t, 0),
                       "quota": self._quota_dict(t), "weight": self.weight(t),
                       "caller_quota": self.quotas[t].to_dict() if t in self.quotas else None}
                   for t in sorted(set(self.calls) | set(self.in_flight) | set(self.quotas) | set(self.policy.tenants))}
        return {"boards": boards, "tenants": tenants, "queued": self.queued(), "lost_releases": self.lost_releases,
                "policy": self.policy.to_dict() | {"error": self.policy_error}}

    def _quota_dict(self, tenant: str) -> dict[str, Any] | None:
        q = self.quota(tenant)
        return None if q.max_concurrent is None and q.device_seconds is None else q.to_dict()

    def grants(self, kind: str | None = None) -> list[tuple[int, str, str, str]]:
        return [g for g in self.grant_log if kind in (None, g[1])]
