"""Dashboard page logic: data functions over a Registry (``_data``), live Serve/Ray telemetry
(``_live``) and thin Streamlit rendering (``_pages``, imported only by apps/dashboard.py)."""

from apps._dashboard._data import (
    KPI_METRICS,
    PARETO_OBJECTIVES,
    artifact_rows,
    comparison,
    drift_features,
    drift_histogram,
    filter_trials,
    fit_reports,
    golden_rows,
    lineage_rows,
    list_deployments,
    list_drift,
    list_pareto,
    list_rollouts,
    list_runs,
    load_json,
    neurobench_table,
    pareto_trials,
    refused,
    refused_rows,
    run_kpis,
    run_stages,
)
from apps._dashboard._live import (
    device_catalog,
    device_occupancy,
    device_pools,
    serve_metrics,
    serve_status,
)

__all__ = [
    "KPI_METRICS", "PARETO_OBJECTIVES", "artifact_rows", "comparison", "drift_features", "drift_histogram",
    "filter_trials", "fit_reports", "golden_rows", "lineage_rows", "list_deployments", "list_drift", "list_pareto", "list_rollouts",
    "list_runs", "load_json", "neurobench_table", "pareto_trials", "refused", "refused_rows", "run_kpis", "run_stages",
    "device_catalog", "device_occupancy", "device_pools", "serve_metrics", "serve_status",
]
