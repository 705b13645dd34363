"""Ray Serve HTTP inference for deployed models, with canary, shadow, blue-green and automatic rollback.

Pure parts (resolver, validation, KPI/breach rules, traffic state, Prometheus text, the in-process
model server, the HTTP client) import without Ray; :func:`start` and :func:`deploy_model_app` load
Ray Serve on first use.
"""

from __future__ import annotations

from typing import Any

from serve._private.client import ServeClient, ServeHTTPError, StreamSession
from serve._private.kpi import KpiWindow, RolloutPolicy, breaches
from serve._private.metrics import Metrics
from serve._private.model import ModelServer, encode_inputs
from serve._private.policy import PolicyError, ServePolicy, SleepState, choose_kind, estimate_ms
from serve._private.resolve import ModelInfo, ResolveError, resolve_model
from serve._private.schemas import (
    DeployRequest,
    FeedbackRequest,
    PredictRequest,
    RequestProblem,
    check_inputs,
    check_spikes,
    parse_npy,
    to_array,
)
from serve._private.stream import Sessions, StreamPolicy
from serve._private.traffic import TrafficError, TrafficState, VersionState

__all__ = ["ServeClient", "ServeHTTPError", "StreamSession", "Sessions", "StreamPolicy", "KpiWindow", "RolloutPolicy", "breaches", "Metrics", "ModelServer",
           "encode_inputs", "ModelInfo", "ResolveError", "resolve_model", "DeployRequest", "FeedbackRequest",
           "PredictRequest", "RequestProblem", "check_inputs", "check_spikes", "parse_npy", "to_array",
           "TrafficError", "TrafficState", "VersionState", "ServePolicy", "PolicyError", "SleepState", "choose_kind",
           "estimate_ms", "start", "deploy_model_app", "shutdown"]


def start(**kw: Any) -> str:
    """Start Serve on 127.0.0.1 and the ingress app; see ``serve._private.factory.start_ingress``."""
    from serve._private.factory import start_ingress

    return start_ingress(**kw)


def deploy_model_app(app_name: str, **kw: Any) -> None:
    """Run one model version as a Serve application (normally via ``POST /admin/deploy``)."""
    from serve._private.factory import deploy_model_app as _deploy

    _deploy(app_name, **kw)


def shutdown() -> None:
    """Stop every Serve application and the HTTP proxy on the connected cluster."""
    from ray import serve

    serve.shutdown()
