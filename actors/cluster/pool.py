"""The one place runtimes become Ray actors, the cluster-wide board scheduler, and the per-kind pool.

Actors are pinned with ``resources={kind: 1}`` (the ``cpu`` baseline asks for no custom resource), so
on a multi-node cluster a board's actor lands on the node that advertises its kind. They restart up to
``max_restarts`` times (on any node that advertises the kind: a replacement node after a node is lost)
and are *named* (``fabric/<kind>/<i>``) so that every driver on the cluster (pipeline jobs, Tune trials,
Serve) shares the same boards. The program is passed with each call as an object ref and cached by
hash in the actor, so a restarted actor reloads it transparently and a retried task is correct.

Every batch takes a ticket from one named scheduler actor (``fabric/scheduler``, pinned to the head
node), or runs under a *lease* the pool holds on one board (single-batch runs, i.e. served requests:
one round trip per batch instead of three; the scheduler recalls the lease as soon as anyone else
waits, see :mod:`actors.cluster.scheduling`): round robin between tenants, per-tenant quotas and weights from the admin's policy file
(``FABRIC_QUOTA_POLICY`` on the head node, :mod:`actors.cluster.policy`), unhealthy boards drained
(:mod:`actors.cluster.scheduling` holds the plain-Python core). Nothing the scheduler's reaper meets is
dropped silently: failed rounds and state-API errors are logged and counted in ``status()["reaper"]``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import ray

from actors.cluster.policy import PolicyError, PolicyFile, QuotaRefused
from actors.cluster.scheduling import (
    FAULT_MODES,
    BoardScheduler,
    DeviceFault,
    LeaseRevoked,
    Quota,
    QuotaExceeded,
    SimulatedFault,
)
from fabric.kinds import capabilities, check_kind, runtime_class
from fabric.records import Program, RunResult

__all__ = ["DeviceActor", "DevicePool", "remote_runtime_class", "actor_options", "scheduler", "pool_status",
           "Quota", "QuotaExceeded", "DeviceFault", "FAULT_MODES", "NAMESPACE", "SCHEDULER_NAME", "DEFAULT_CALL_TIMEOUT_S",
           "SchedulerActor", "classify_owners", "LeaseRevoked", "LEASE_S", "LEASE_BATCHES"]

log = logging.getLogger(__name__)

NAMESPACE = "fabric"
SCHEDULER_NAME = "scheduler"
HEALTH_TIMEOUT_S = 3.0
CLAIM_TIMEOUT_S = 60.0  # a grant no board started within this long belongs to a dead caller
REAP_PERIOD_S = 5.0  # the scheduler's own pump/reaper period
REAP_AFTER_S = 5.0  # grants older than this are checked against Ray's list of dead workers
# A device call unanswered this long was lost (its board died mid-call and Ray's retry never reached
# the restarted actor, seen on the test cluster) or hangs: the pool drains that board and re-queues the
# batch. Emulated batches take milliseconds to a few seconds; pass ``call_timeout_s=None`` to wait forever.
DEFAULT_CALL_TIMEOUT_S = 120.0
LEASE_S = 1.0  # a pool gives its lease back and asks anew after this long (the scheduler recalls at LEASE_MAX_S)
LEASE_BATCHES = 10_000  # ... or after this many batches
REVOKE_TIMEOUT_S = 150.0  # a recall unacknowledged this long (a hung board) is left to the caller's call timeout


def _line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[-1] if text else ''}".rstrip(": ")


def classify_owners(owners: Iterable[str], lookup: Callable[[str], list[Any]]) -> tuple[set[str], dict[str, str]]:
    """``(dead, unknown)``: owners whose worker records are all not alive, and ``{owner: why}`` for those
    nobody can tell about (the lookup failed, or lists no such worker).

    Why: a state-API error used to read as "nobody is dead"; now it is *unknown* - never reaped (a board
    is never freed on doubt), but named, so a board held forever by an owner nobody can check shows up.
    """
    dead: set[str] = set()
    unknown: dict[str, str] = {}
    for owner in sorted(owners):
        try:
            ws = lookup(owner)
        except Exception as exc:  # the state API timed out, is missing or failed: unknown, not alive
            unknown[owner] = f"state API error: {_line(exc)}"
            continue
        if not ws:
            unknown[owner] = "not listed by the state API"
        elif not any(w.is_alive for w in ws):
            dead.add(owner)
    return dead, unknown


def _dead_workers(owners: set[str]) -> tuple[set[str], dict[str, str]]:
    """:func:`classify_owners` over Ray's state API (``list_workers``)."""
    try:
        from ray.util.state import list_workers
    except ImportError as exc:
        return set(), {o: f"state API unavailable: {_line(exc)}" for o in owners}
    return classify_owners(owners, lambda o: list_workers(filters=[("worker_id", "=", o)],
                                                          raise_on_missing_output=False, timeout=10))


class DeviceActor:
    """Thin actor body: holds one runtime (one board); everything it does is the runtime's plain Python.

    Emulated boards accept simulated faults (:meth:`inject_fault`); ``health()`` merges the runtime's
    own report with the fault state and the node the actor runs on.
    """

    def __init__(self, kind: str, device_id: str) -> None:
        self.kind = kind
        self.device_id = device_id
        self.runtime = runtime_class(kind)(device_id=device_id)
        self.loaded: str | None = None
        self.busy_s = 0.0
        self.calls = 0
        self.fault = SimulatedFault()
        self._sched: Any = None
        self._run_lock = threading.Lock()  # one batch at a time; a lease recall waits for the current one
        self._lease: int | None = None  # the lease this board last confirmed with the scheduler

    def execute(self, program: Program, program_hash: str, spikes: np.ndarray, record_raster: bool = False,
                ticket: int | None = None, lease: bool = False) -> RunResult:
        """Run one batch; with a ``ticket`` the board itself returns it to the scheduler when done.

        With ``lease`` the ticket is a lease: the board checks it with the scheduler on its first
        batch (so a restarted board, or a stale caller after a recall, is refused with
        :class:`LeaseRevoked`) and accounts each batch instead of returning the ticket."""
        with self._run_lock:
            if lease and ticket is not None and self._lease != ticket:
                if ray.get(self._scheduler().lease_ok.remote(ticket)) is None:
                    raise LeaseRevoked(f"{self.device_id}: lease {ticket} was recalled; ask the scheduler again")
                self._lease = ticket
            t0 = time.perf_counter()
            try:
                self.fault.before_run(self.device_id)
                if self.loaded != program_hash:
                    self.runtime.load(program)
                    self.loaded = program_hash
                out = self.runtime.run(spikes, record_raster=record_raster)
            except DeviceFault as exc:
                self._release(ticket, time.perf_counter() - t0, False, str(exc), lease)
                raise
            except Exception:
                self._release(ticket, time.perf_counter() - t0, True, "", lease)  # a bad batch, not a bad board
                raise
            dt = time.perf_counter() - t0
            self.busy_s += dt
            self.calls += 1
            self._release(ticket, dt, True, "", lease)
            return out

    def revoke(self, ticket: int) -> None:
        """The scheduler recalls lease ``ticket``: returns once no batch of it runs, and refuses later ones."""
        with self._run_lock:
            if self._lease == ticket:
                self._lease = None

    def _scheduler(self) -> Any:
        if self._sched is None:
            self._sched = ray.get_actor(SCHEDULER_NAME, namespace=NAMESPACE)
        return self._sched

    def _release(self, ticket: int | None, busy_s: float, ok: bool, reason: str, lease: bool = False) -> None:
        if ticket is not None:
            (self._scheduler().account if lease else self._scheduler().release).remote(ticket, busy_s, ok, reason)

    def compile(self, graph_dict: dict[str, Any], options: dict[str, Any] | None = None) -> Program:
        import nir

        return self.runtime.compile(nir.NIRGraph.from_dict(graph_dict), options)

    def health(self) -> dict[str, Any]:
        h = dict(self.runtime.health())
        f = self.fault.health()
        h.update(ok=bool(h.get("ok", True)) and f["ok"], fault=f["fault"], degraded=f["degraded"],
                 calls=self.calls, busy_s=self.busy_s,
                 node_id=ray.get_runtime_context().get_node_id() if ray.is_initialized() else None)
        return h

    def inject_fault(self, mode: str, delay_s: float = 0.5, stuck_s: float = 3600.0) -> dict[str, Any]:
        """Simulate a board fault (emulated kinds only): ``dead``, ``stuck`` or ``slow``."""
        if not self.runtime.info().get("emulated", False):
            raise ValueError(f"{self.device_id}: simulated faults are for emulated boards; this one is hardware")
        self.fault.inject(mode, delay_s=delay_s, stuck_s=stuck_s)
        return self.health()

    def clear_fault(self) -> dict[str, Any]:
        self.fault.clear()
        return self.health()

    def info(self) -> dict[str, Any]:
        return self.runtime.info()


class SchedulerActor:
    """Async actor around :class:`BoardScheduler`: tickets wait on futures resolved by ``dispatch``."""

    def __init__(self, policy: PolicyFile | None = None) -> None:
        import asyncio

        self._asyncio = asyncio
        self.core = BoardScheduler()
        self.policy_file = policy or PolicyFile()  # FABRIC_QUOTA_POLICY in this (head-node) process
        self.futures: dict[int, Any] = {}
        self._reaper: Any = None
        self.reaped: list[str] = []  # owners found dead and forgotten (for status / tests)
        self.reaper_rounds = 0
        self.reaper_errors = 0  # rounds that raised (logged; the loop goes on)
        self.last_reaper_error: str | None = None
        self.state_api_errors = 0  # rounds in which some owner's liveness could not be asked
        self.unknown_owners: dict[str, str] = {}  # owner -> why its liveness is unknown (last round)
        self._refresh_policy()

    def _refresh_policy(self) -> None:
        """Apply the policy file as it is now; a bad or missing file stops new grants (logged once)."""
        try:
            policy = self.policy_file.current()
        except PolicyError as exc:
            if self.core.policy_error != str(exc):
                log.error("board scheduler: %s; no new tickets are granted until it is fixed", exc)
            self.core.set_policy(None, str(exc))
            return
        if self.core.policy_error is not None:
            log.warning("board scheduler: quota policy %s is valid again; granting tickets", policy.source)
        self.core.set_policy(policy)

    async def _reap_once(self) -> None:
        """One round: re-read the policy, free the boards of owners Ray reports dead, pump."""
        self._refresh_policy()
        owners = self.core.held_owners(REAP_AFTER_S)
        dead, unknown = await self._asyncio.to_thread(_dead_workers, owners) if owners else (set(), {})
        errors = {o: why for o, why in unknown.items() if why.startswith("state API")}
        if errors:  # unknown is not alive and not dead: not reaped, but said out loud
            self.state_api_errors += 1
            log.warning("board scheduler reaper: cannot tell whether %d board holder(s) live, not freeing their "
                        "boards: %s", len(errors), "; ".join(f"{o[:12]}: {w}" for o, w in errors.items()))
        self.unknown_owners = unknown
        for owner in dead:
            self._drop(self.core.forget_owner(owner))
            self.reaped.append(owner)
        self._pump()
        self.reaper_rounds += 1

    async def _reap_forever(self) -> None:
        """Every REAP_PERIOD_S: pump (sweep + dispatch) without waiting for a caller, and free the boards
        held by callers Ray reports dead (a SIGKILLed trial worker, a killed job driver)."""
        while True:
            await self._asyncio.sleep(REAP_PERIOD_S)
            try:
                await self._reap_once()
            except Exception as exc:  # never let the reaper die, never hide why a round failed
                self.reaper_errors += 1
                first = self.last_reaper_error != _line(exc)
                self.last_reaper_error = _line(exc)
                log.warning("board scheduler reaper: round failed (%d so far), retrying in %ss: %s",
                            self.reaper_errors, REAP_PERIOD_S, self.last_reaper_error, exc_info=first)

    def _drop(self, tids: list[int]) -> None:
        for tid in tids:
            fut = self.futures.pop(tid, None)
            if fut is not None and not fut.done():
                fut.cancel()

    def _pump(self) -> None:
        if self._reaper is None:  # started lazily: __init__ runs before the actor's event loop exists
            self._reaper = self._asyncio.ensure_future(self._reap_forever())
        self._drop(self.core.sweep(CLAIM_TIMEOUT_S))  # grants nobody used: their caller is gone
        for tid, board in self.core.recall():  # leases someone else waits for (or idle, old, over quota)
            self._asyncio.ensure_future(self._revoke(tid, board))
        for tid, decision in self.core.dispatch():
            fut = self.futures.get(tid)
            if fut is None or fut.done():
                continue
            if isinstance(decision, BaseException):
                fut.set_exception(decision)
            else:
                fut.set_result(decision)

    async def _revoke(self, ticket: int, board: str) -> None:
        """Take a lease back: the board acknowledges once its current batch is done; then it is free."""
        try:
            await self._asyncio.wait_for(_board_handle(board).revoke.remote(ticket), REVOKE_TIMEOUT_S)
        except self._asyncio.TimeoutError:
            log.warning("board scheduler: %s did not acknowledge the recall of lease %d in %ss; left to the "
                        "holder's call timeout", board, ticket, REVOKE_TIMEOUT_S)
            return
        except Exception as exc:  # the board is gone (restarts spent): nothing of the lease can run there
            log.info("board scheduler: recall of lease %d on %s: %s", ticket, board, _line(exc))
        self.core.end_lease(ticket)
        self._pump()

    async def register(self, kind: str, names: list[str]) -> None:
        self.core.register(kind, names)
        self._pump()

    async def set_quota(self, tenant: str, quota: dict[str, Any] | None) -> None:
        """A caller's quota: may only lower the policy's limits (QuotaRefused otherwise)."""
        self._refresh_policy()
        self.core.set_quota(tenant, None if quota is None else Quota(**quota))
        self._pump()

    async def request_many(self, kind: str, tenant: str, allowed: list[str], n: int, owner: str = "") -> list[int]:
        self._refresh_policy()
        tids = [self.core.request(kind, tenant, allowed, owner) for _ in range(n)]
        loop = self._asyncio.get_running_loop()
        for t in tids:
            self.futures[t] = loop.create_future()
        self._pump()
        return tids

    async def wait(self, ticket: int) -> str | dict[str, str]:
        """The granted board's name, or ``{"error": ...}`` (quota spent, cancelled): never raises, so a
        caller that gives up on its other tickets leaves no unhandled errors behind."""
        fut = self.futures.get(ticket)
        if fut is None:
            return {"error": f"ticket {ticket} is not waiting (cancelled or already released)", "type": "KeyError"}
        try:
            return await fut
        except self._asyncio.CancelledError:
            return {"error": f"ticket {ticket} was cancelled", "type": "CancelledError"}
        except Exception as exc:
            return {"error": str(exc), "type": type(exc).__name__}
        finally:
            self.futures.pop(ticket, None)

    async def lease(self, kind: str, tenant: str, allowed: list[str], owner: str = "") -> tuple[int, str] | dict[str, str]:
        """Queue a lease and wait for its grant in one call: ``(ticket, board)``, or ``{"error": ...}``
        as :meth:`wait` gives (quota spent while waiting). Raises QuotaExceeded / PolicyError at once."""
        self._refresh_policy()
        tid = self.core.request(kind, tenant, allowed, owner, lease=True)
        self.futures[tid] = self._asyncio.get_running_loop().create_future()
        self._pump()
        board = await self.wait(tid)
        if isinstance(board, dict):
            return board
        self.core.claim(tid)  # returned to a live caller; one that dies holding it is reaped by owner
        return tid, board

    async def lease_ok(self, ticket: int) -> str | None:
        return self.core.lease_ok(ticket)

    async def account(self, ticket: int, busy_s: float, ok: bool = True, reason: str = "") -> None:
        self.core.account(ticket, busy_s, ok, reason)
        self._pump()

    async def end_lease(self, ticket: int) -> None:
        self.core.end_lease(ticket)
        self._pump()

    async def release(self, ticket: int, busy_s: float = 0.0, ok: bool = True, reason: str = "") -> None:
        self.core.release(ticket, busy_s, ok, reason)
        self._pump()

    async def claim(self, ticket: int) -> None:
        self.core.claim(ticket)

    async def delivered(self, ticket: int) -> None:
        self.core.delivered(ticket)

    async def cancel(self, tickets: list[int]) -> None:
        for t in tickets:
            self.core.cancel(t)
            fut = self.futures.pop(t, None)
            if fut is not None and not fut.done():
                fut.cancel()
        self._pump()

    async def drain(self, board: str, reason: str) -> None:
        self.core.drain(board, reason)

    async def undrain(self, board: str) -> None:
        self.core.undrain(board)
        self._pump()

    async def report_health(self, verdicts: list[tuple[str, bool, str]]) -> None:
        for board, ok, reason in verdicts:
            self.core.report_health(board, ok, reason)
        self._pump()

    async def status(self) -> dict[str, Any]:
        return self.core.status() | {"reaped_owners": list(self.reaped), "reaper": {
            "rounds": self.reaper_rounds, "errors": self.reaper_errors, "last_error": self.last_reaper_error,
            "state_api_errors": self.state_api_errors, "unknown_owners": dict(self.unknown_owners)}}

    async def grants(self, kind: str | None = None) -> list[tuple[int, str, str, str]]:
        return self.core.grants(kind)


def actor_options(kind: str, max_restarts: int = 3) -> dict[str, Any]:
    """Resources and restart policy of a board actor (``max_concurrency=4``: health answers while busy).

    ``max_task_retries=-1``: a call whose board died (node lost) waits for the restarted actor and runs
    there; restarts themselves are bounded by ``max_restarts``, and application errors are never retried.
    """
    # scheduling_strategy DEFAULT: a board is cluster-wide, never part of the caller's placement group
    # (a Tune trial re-creating a board whose restarts were spent failed with "cannot fit into any
    # bundles for the placement group", and a captured detached actor would die with the trial's group)
    # max_concurrency 4: a running batch, the next one waiting on the board's lock, a lease recall, health
    opts: dict[str, Any] = {"num_cpus": 0, "max_restarts": max_restarts, "max_task_retries": -1, "max_concurrency": 4,
                            "scheduling_strategy": "DEFAULT"}
    if kind != "cpu":
        opts["resources"] = {kind: 1}
    return opts


_REMOTE = None
_SCHED_CLS = None


def remote_runtime_class():
    """``ray.remote(DeviceActor)``, built once (the single factory)."""
    global _REMOTE
    if _REMOTE is None:
        _REMOTE = ray.remote(DeviceActor)
    return _REMOTE


def scheduler():
    """The cluster's one board scheduler (created on first use, pinned to the head node, detached)."""
    global _SCHED_CLS
    if _SCHED_CLS is None:
        _SCHED_CLS = ray.remote(SchedulerActor)
    return _SCHED_CLS.options(name=SCHEDULER_NAME, namespace=NAMESPACE, get_if_exists=True, lifetime="detached",
                              num_cpus=0, max_restarts=-1, max_concurrency=1000, scheduling_strategy="DEFAULT",
                              resources={"node:__internal_head__": 0.001}).remote()


def _board_handle(name: str) -> Any:
    return ray.get_actor(name, namespace=NAMESPACE)


def _unwrap(exc: BaseException) -> BaseException:
    cause = getattr(exc, "cause", None)
    return cause if isinstance(cause, BaseException) else exc


class DevicePool:
    """``size`` named actors of one kind; ``run`` spreads batches over the boards the scheduler grants.

    When every board is busy, batches wait for a ticket (``queued`` reports how many), so a board is a
    shared resource, never oversubscribed. ``tenant``/``quota`` name who pays and the limits that apply
    cluster-wide; the admin's policy (``FABRIC_QUOTA_POLICY``) sets the limits and ``quota`` can only
    lower them (:class:`~actors.cluster.policy.QuotaRefused` otherwise); ``call_timeout_s`` drains a
    board whose call hangs and re-queues its batch.
    """

    def __init__(self, kind: str, size: int | None = None, max_restarts: int = 3, *, tenant: str = "default",
                 quota: Quota | None = None, call_timeout_s: float | None = DEFAULT_CALL_TIMEOUT_S,
                 max_attempts: int = 3) -> None:
        if not ray.is_initialized():
            raise RuntimeError("DevicePool needs a connected fabric: call fabric.connect() first")
        check_kind(kind)  # unknown kind -> error listing valid kinds
        board = capabilities(kind).needs_resource
        if not tenant or not isinstance(tenant, str):
            raise ValueError(f"tenant must be a non-empty string, got {tenant!r}")
        self.kind = kind
        self.tenant = tenant
        self.call_timeout_s = call_timeout_s
        self.max_attempts = max_attempts
        if size is None:
            size = max(1, int(ray.cluster_resources().get(kind, 1))) if board else 1
        if board and ray.cluster_resources().get(kind, 0) < 1:
            raise RuntimeError(
                f"no node of this cluster advertises the {kind!r} resource; start Ray with "
                f"--resources='{{\"{kind}\": 1}}' or connect to a cluster that hosts it"
            )
        self.max_restarts = max_restarts
        self.names = [f"{kind}/{i}" for i in range(size)]
        self.actors = [self._create(i) for i in range(size)]
        self._handles = dict(zip(self.names, self.actors, strict=True))
        self.sched = scheduler()
        self.sched.register.remote(kind, self.names)
        if quota is not None:  # only lowers the admin policy's limits; raising is refused (QuotaRefused)
            try:
                ray.get(self.sched.set_quota.remote(tenant, quota.to_dict()))
            except ray.exceptions.RayTaskError as exc:
                raise _one_line(exc) from None
        self._owner = ray.get_runtime_context().get_worker_id()
        self._refs: dict[str, ray.ObjectRef] = {}  # program digest -> object ref (put once)
        self.queued = 0
        self.in_flight = 0
        self._lease: list[Any] | None = None  # [ticket, board, granted at (monotonic), batches run]
        self._lease_lock = threading.Lock()  # one lease per pool; concurrent single-batch runs take turns
        self.lease_grants = 0  # leases this pool was granted (for benchmarks and tests)

    def _create(self, i: int) -> Any:
        """Board ``i``'s named actor: the existing one, or a new one (first use, or restarts spent)."""
        return remote_runtime_class().options(
            name=self.names[i], namespace=NAMESPACE, get_if_exists=True, lifetime="detached",
            **actor_options(self.kind, self.max_restarts)).remote(self.kind, f"{self.kind}-emu-{i}")

    def _revive(self) -> None:
        """Re-create boards whose actor is gone (restarts spent): a drained board that no call of
        this pool touches would otherwise never come back, and every batch of the kind would wait."""
        for j, name in enumerate(self.names):
            try:
                _board_handle(name)
            except ValueError:
                self.actors[j] = self._handles[name] = self._create(j)

    def _program_ref(self, program: Program) -> tuple[str, ray.ObjectRef]:
        phash = program.digest
        pref = self._refs.get(phash)
        if pref is None:
            pref = self._refs[phash] = ray.put(program)
        return phash, pref

    def end_lease(self) -> None:
        """Give this pool's lease back now (else it ends after LEASE_S, or when the scheduler recalls it)."""
        with self._lease_lock:
            self._drop_lease(give_back=True)

    def _drop_lease(self, give_back: bool) -> None:
        if self._lease is not None and give_back:
            self.sched.end_lease.remote(self._lease[0])
        self._lease = None

    def _leased(self) -> list[Any]:
        """The pool's lease while it is young enough, else a new one (one scheduler call)."""
        lz = self._lease
        if lz is not None and time.monotonic() - lz[2] < LEASE_S and lz[3] < LEASE_BATCHES:
            return lz
        self._drop_lease(give_back=True)
        while True:
            try:
                got = ray.get(self.sched.lease.remote(self.kind, self.tenant, self.names, self._owner))
            except ray.exceptions.RayTaskError as exc:
                raise _one_line(exc) from None
            if isinstance(got, dict):
                err = QuotaExceeded if got["type"] == "QuotaExceeded" else RuntimeError
                raise err(got["error"])
            self.lease_grants += 1
            self._lease = [got[0], got[1], time.monotonic(), 0]
            return self._lease

    def _run_leased(self, pref: ray.ObjectRef, phash: str, batch: np.ndarray, record_raster: bool,
                    progress: Any | None) -> RunResult:
        """One batch under the pool's lease: straight to the leased board, one round trip. A recall
        (LeaseRevoked) takes a new lease; board faults, lost boards and timeouts retry as ``run`` does."""
        attempts, recalls = 0, 0
        with self._lease_lock:
            while True:
                t, board, _, _ = lz = self._leased()
                ref = self._handles[board].execute.remote(pref, phash, batch, record_raster, t, True)
                why = ""
                try:
                    out = ray.get(ref, timeout=self.call_timeout_s)
                    lz[3] += 1
                    if progress is not None:
                        progress.update(1)
                    return out
                except ray.exceptions.GetTimeoutError:
                    self.sched.release.remote(t, float(self.call_timeout_s or 0.0), False,
                                              f"call timed out after {self.call_timeout_s}s")
                    ray.cancel(ref, force=False)
                    why = f"{board} timed out"
                except ray.exceptions.RayTaskError as exc:
                    cause = _unwrap(exc)
                    if isinstance(cause, LeaseRevoked):
                        recalls += 1  # someone else waits for the board: queue again (round robin)
                        if recalls > 1000:
                            raise RuntimeError(f"{self.kind}: lease recalled {recalls} times in a row") from None
                        self._drop_lease(give_back=False)
                        continue
                    if not isinstance(cause, DeviceFault):
                        raise cause from None  # a bad batch or program: the caller's error (lease kept)
                    why = str(cause)  # the board drained itself and ended the lease when it accounted
                except ray.exceptions.RayActorError as exc:  # restarts spent: recreate the board, retry
                    self.sched.end_lease.remote(t)
                    j = self.names.index(board)
                    self.actors[j] = self._handles[board] = self._create(j)
                    why = f"{board}: {type(exc).__name__}"
                self._drop_lease(give_back=False)
                attempts += 1
                if attempts >= self.max_attempts:
                    raise RuntimeError(f"{self.kind}: batch 0 failed on {attempts} boards (last: {why})")

    def run(self, program: Program, batches: list[np.ndarray], record_raster: bool = False,
            progress: Any | None = None) -> list[RunResult]:
        """Run every batch (in order of the returned list) on the boards the scheduler grants.

        A single batch (a served request, a benchmark call) runs under the pool's board lease; more
        batches take one ticket each, spread over every board of the kind."""
        phash, pref = self._program_ref(program)
        if len(batches) == 1:
            return [self._run_leased(pref, phash, batches[0], record_raster, progress)]
        if self._lease is not None:  # its own tickets would only wait for it to be recalled
            self.end_lease()
        n = len(batches)
        results: list[RunResult | None] = [None] * n
        attempts = [0] * n
        todo = deque(range(n))
        waits: dict[ray.ObjectRef, tuple[int, int]] = {}
        execs: dict[ray.ObjectRef, tuple[int, int, str, float]] = {}
        live: set[int] = set()
        last_probe = time.monotonic()
        window = 1024  # tickets queued at the scheduler at once; fairness is decided there, per tenant

        def retry(i: int, why: str) -> None:
            attempts[i] += 1
            if attempts[i] >= self.max_attempts:
                raise RuntimeError(f"{self.kind}: batch {i} failed on {attempts[i]} boards (last: {why})")
            todo.appendleft(i)

        try:
            while todo or waits or execs:
                k = min(len(todo), window - len(waits) - len(execs))
                if k > 0:
                    idx = [todo.popleft() for _ in range(k)]
                    try:
                        tids = ray.get(self.sched.request_many.remote(self.kind, self.tenant, self.names, k,
                                                                      self._owner))
                    except ray.exceptions.RayTaskError as exc:
                        raise _one_line(exc) from None
                    for i, t in zip(idx, tids, strict=True):
                        waits[self.sched.wait.remote(t)] = (i, t)
                        live.add(t)
                self.queued, self.in_flight = len(todo) + len(waits), len(execs)
                ready, _ = ray.wait(list(waits) + list(execs), num_returns=1, timeout=1.0)
                if not ready and waits and not execs and time.monotonic() - last_probe > 5.0:
                    # waiting with nothing running: boards may be drained or gone; bring them back
                    self._revive()
                    pool_status([self.kind])
                    last_probe = time.monotonic()
                for ref in ready:
                    if ref in waits:
                        i, t = waits.pop(ref)
                        board = ray.get(ref)
                        if isinstance(board, dict):
                            live.discard(t)
                            err = QuotaExceeded if board["type"] == "QuotaExceeded" else RuntimeError
                            raise err(board["error"])
                        self.sched.claim.remote(t)  # the grant reached a live caller (see BoardScheduler.sweep)
                        h = self._handles[board]
                        execs[h.execute.remote(pref, phash, batches[i], record_raster, t)] = (i, t, board, time.monotonic())
                        continue
                    i, t, board, _ = execs.pop(ref)
                    live.discard(t)
                    self.sched.delivered.remote(t)  # frees the board should the board's own release be lost
                    try:
                        results[i] = ray.get(ref)
                    except ray.exceptions.RayTaskError as exc:
                        cause = _unwrap(exc)
                        if not isinstance(cause, DeviceFault):
                            raise cause from None  # a bad batch or program: the caller's error
                        retry(i, str(cause))  # the board drained itself when it returned its ticket
                        continue
                    except ray.exceptions.RayActorError as exc:  # restarts spent: recreate the board, retry
                        self.sched.release.remote(t, 0.0, False, "")  # not drained: the board is re-created
                        j = self.names.index(board)
                        self.actors[j] = self._handles[board] = self._create(j)
                        retry(i, f"{board}: {type(exc).__name__}")
                        continue
                    if progress is not None:
                        progress.update(1)
                if self.call_timeout_s is not None:
                    now = time.monotonic()
                    for ref, (i, t, board, t0) in list(execs.items()):
                        if now - t0 > self.call_timeout_s:
                            execs.pop(ref)
                            live.discard(t)
                            self.sched.release.remote(t, now - t0, False, f"call timed out after {self.call_timeout_s}s")
                            retry(i, f"{board} timed out")
        finally:
            if live:
                self.sched.cancel.remote(sorted(live))
            self.queued = self.in_flight = 0
        return results  # type: ignore[return-value]

    def compile(self, graph: Any, options: dict[str, Any] | None = None) -> Program:
        return ray.get(self.actors[0].compile.remote(graph.to_dict(), options))

    def health(self) -> list[dict[str, Any]]:
        return ray.get([a.health.remote() for a in self.actors])

    def info(self) -> dict[str, Any]:
        return ray.get(self.actors[0].info.remote())

    def inject_fault(self, index: int, mode: str, **kw: Any) -> dict[str, Any]:
        """Simulate a fault on board ``index`` of this pool (emulated kinds)."""
        if mode not in FAULT_MODES:
            raise ValueError(f"fault mode must be one of {FAULT_MODES}, got {mode!r}")
        return ray.get(self.actors[index].inject_fault.remote(mode, **kw))

    def clear_fault(self, index: int) -> dict[str, Any]:
        return ray.get(self.actors[index].clear_fault.remote())

    def drain(self, index: int, reason: str = "drained by operator") -> None:
        ray.get(self.sched.drain.remote(self.names[index], reason))

    def undrain(self, index: int) -> None:
        ray.get(self.sched.undrain.remote(self.names[index]))

    def status(self) -> list[dict[str, Any]]:
        return pool_status([self.kind])


def _one_line(exc: BaseException) -> BaseException:
    cause = _unwrap(exc)
    if isinstance(cause, QuotaExceeded | QuotaRefused | PolicyError | KeyError):
        return cause
    return RuntimeError(str(cause).strip().splitlines()[-1])


def pool_status(kinds: list[str] | None = None, probe: bool = True) -> list[dict[str, Any]]:
    """Per board: ``{kind, name, node_id, healthy, drained, calls, busy_s, queued, tenant_usage, ...}``.

    With ``probe`` each board's ``health()`` is asked (``HEALTH_TIMEOUT_S``); an unhealthy or silent
    board is drained, a drained one that reports healthy again (after a health drain) is brought back.
    """
    if not ray.is_initialized():
        raise RuntimeError("pool_status needs a connected fabric: call fabric.connect() first")
    sched = scheduler()
    st = ray.get(sched.status.remote())
    names = sorted(n for n, b in st["boards"].items() if kinds is None or b["kind"] in kinds)
    health: dict[str, dict[str, Any] | None] = {n: None for n in names}
    if probe and names:
        refs = {}
        for n in names:
            try:
                refs[_board_handle(n).health.remote()] = n
            except ValueError:  # actor not found (never created or gone)
                pass
        ready, _ = ray.wait(list(refs), num_returns=len(refs), timeout=HEALTH_TIMEOUT_S)
        for r in ready:
            try:
                health[refs[r]] = ray.get(r)
            except ray.exceptions.RayError as exc:
                health[refs[r]] = {"ok": False, "error": type(exc).__name__}
        verdicts = []
        for n in names:
            h = health[n]
            if h is None:
                verdicts.append((n, False, f"unhealthy: no health answer in {HEALTH_TIMEOUT_S}s"))
            else:
                verdicts.append((n, bool(h.get("ok")), f"unhealthy: {h.get('fault') or h.get('error') or 'ok=False'}"))
        ray.get(sched.report_health.remote(verdicts))
        st = ray.get(sched.status.remote())
    out = []
    for n in names:
        b, h = st["boards"][n], health[n] or {}
        out.append({"kind": b["kind"], "name": n, "node_id": h.get("node_id"), "healthy": b["healthy"],
                    "drained": b["drained"], "drain_reason": b["drain_reason"], "busy": b["busy"],
                    "calls": b["calls"], "failures": b["failures"], "busy_s": b["busy_s"],
                    "queued": st["queued"].get(b["kind"], 0), "tenant_usage": b["tenant_usage"],
                    "fault": h.get("fault"), "degraded": bool(h.get("degraded"))})
    return out
