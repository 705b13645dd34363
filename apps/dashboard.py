"""Streamlit dashboard: where every model stands against its requirements, on every device.

``streamlit run apps/dashboard.py -- --store URL [--serve-url URL] [--ray-address ADDR]`` or
``fabric dashboard``. It reads the registry (KPI reports, fit reports, Pareto fronts, rollouts, drift
reports) and live Serve/actor telemetry; it computes nothing a stage should have stored.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import streamlit as st

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `streamlit run` puts only apps/ on the path

from apps._dashboard._pages import PAGES, Context, render  # noqa: E402
from fabric.store.backend import default_store_url  # noqa: E402
from fabric.store.registry import Registry  # noqa: E402


def _args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="dashboard")
    ap.add_argument("--store", default=None)
    ap.add_argument("--tenant", default=None)
    ap.add_argument("--serve-url", default=None)
    ap.add_argument("--ray-address", default=None)
    a, _ = ap.parse_known_args(sys.argv[1:])
    # AppTest and embedding callers pass settings through session state; the environment is the fallback
    ss = st.session_state
    a.store = ss.get("store") or a.store or default_store_url()
    a.tenant = ss.get("tenant") or a.tenant
    a.serve_url = ss.get("serve_url") or a.serve_url
    # the admin token travels in the environment (`fabric dashboard` sets it), never on a command line
    a.serve_token = ss.get("serve_token") or os.environ.get("FABRIC_SERVE_TOKEN")
    a.ray_address = ss.get("ray_address") or a.ray_address or os.environ.get("RAY_ADDRESS")
    return a


@st.cache_resource(show_spinner=False)
def _registry(store: str, tenant: str | None) -> Registry:
    return Registry(store, tenant=tenant)


def main() -> None:
    st.set_page_config(page_title="Neuromorphic fabric", layout="wide")
    a = _args()
    try:
        reg = _registry(a.store, a.tenant)
    except ValueError as exc:
        st.error(f"cannot open the store: {exc}")
        return
    names = list(PAGES)
    want = st.query_params.get("page", "Runs")
    page = st.sidebar.radio("Page", names, index=names.index(want) if want in names else 0, key="page")
    if st.query_params.get("page") != page:
        st.query_params["page"] = page
    if st.sidebar.button("Refresh", help="re-read the store now (listings are cached for a few seconds)"):
        st.cache_data.clear()
    st.sidebar.caption(f"store: {reg.url}")
    st.sidebar.caption(f"serve: {a.serve_url or '-'}  ·  ray: {a.ray_address or '-'}")
    st.title("Neuromorphic fabric")
    render(Context(reg=reg, serve_url=a.serve_url, serve_token=a.serve_token, ray_address=a.ray_address), page)


main()
