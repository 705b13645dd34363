"""The Ray layer: board actors (the one place applying ray.remote), device pools, the board scheduler and
the admin's quota policy it applies."""

from actors.cluster.policy import (  # noqa: F401
    POLICY_ENV,
    POLICY_SIGNED_ENV,
    PolicyError,
    PolicyFile,
    QuotaPolicy,
    QuotaRefused,
    TenantLimits,
    load_policy,
    parse_policy,
)
from actors.cluster.pool import (  # noqa: F401
    DEFAULT_CALL_TIMEOUT_S,
    NAMESPACE,
    SCHEDULER_NAME,
    DeviceActor,
    DevicePool,
    SchedulerActor,
    actor_options,
    classify_owners,
    pool_status,
    remote_runtime_class,
    scheduler,
)
from actors.cluster.scheduling import (  # noqa: F401
    FAULT_MODES,
    BoardScheduler,
    DeviceFault,
    Quota,
    QuotaExceeded,
    SimulatedFault,
)

__all__ = [
    "DeviceActor",
    "DevicePool",
    "remote_runtime_class",
    "actor_options",
    "scheduler",
    "pool_status",
    "Quota",
    "QuotaExceeded",
    "DeviceFault",
    "FAULT_MODES",
    "NAMESPACE",
    "SCHEDULER_NAME",
    "DEFAULT_CALL_TIMEOUT_S",
    "SimulatedFault",
    "BoardScheduler",
    "SchedulerActor",
    "classify_owners",
    "POLICY_ENV",
    "POLICY_SIGNED_ENV",
    "PolicyError",
    "PolicyFile",
    "QuotaPolicy",
    "QuotaRefused",
    "TenantLimits",
    "load_policy",
    "parse_policy",
]
