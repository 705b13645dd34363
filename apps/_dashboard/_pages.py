"""Thin Streamlit rendering of the data functions in ``_data``/``_live``: one function per page.

KPI values that matter are shown with ``st.metric``/``st.table`` (real DOM text, so a browser test and
a screen reader can read them); wide tables use ``st.dataframe``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import altair as alt
import pandas as pd
import streamlit as st

from apps._dashboard import _data as D
from apps._dashboard import _live as L
from fabric.kpis import by_name
from fabric.store.registry import Registry

__all__ = ["Context", "PAGES", "render", "show_refused"]


@dataclass(kw_only=True)
class Context:
    reg: Registry
    serve_url: str | None = None
    serve_token: str | None = None
    ray_address: str | None = None


# Listings scan every record of the store (one read + signature check each, one GET each on s3://), so
# they are cached for a few seconds per store; an artifact's JSON is immutable (its id is its hash), so
# it is cached for good once read and verified. The sidebar's Refresh clears both.
LIST_TTL_S = 15


@st.cache_data(ttl=LIST_TTL_S, show_spinner=False)
def _listing(url: str, what: str, _reg: Registry) -> pd.DataFrame:
    return getattr(D, what)(_reg)


@st.cache_data(show_spinner=False, max_entries=512)
def _doc(url: str, aid: str, _reg: Registry) -> dict[str, Any]:
    return D.load_json(_reg, aid)


def listing(ctx: Context, what: str) -> pd.DataFrame:
    return _listing(ctx.reg.url, what, ctx.reg)


def stored(ctx: Context, aid: str) -> dict[str, Any]:
    return _doc(ctx.reg.url, aid, ctx.reg)


def _fmt(v: Any, fmt: str = ".4g") -> str:
    return "-" if v is None or (isinstance(v, float) and v != v) else format(v, fmt)


def _pick_run(ctx: Context, key: str) -> tuple[pd.Series, dict[str, Any]] | None:
    runs = listing(ctx, "list_runs")
    if runs.empty:
        st.info("No runs yet — run `fabric run examples/digits.yaml` (or `make demo`) to create one.")
        return None
    labels = [f"{r.spec} · {r.created} · {r.report[:10]}" for r in runs.itertuples()]
    want = st.query_params.get("run", "")
    idx = next((i for i, r in enumerate(runs.itertuples()) if want and r.report.startswith(want)), 0)
    i = st.selectbox("Run", range(len(runs)), index=idx, format_func=lambda j: labels[j], key=key)
    row = runs.iloc[i]
    return row, stored(ctx, row["report"])


def page_runs(ctx: Context) -> None:
    st.header("Runs")
    runs = listing(ctx, "list_runs")
    if runs.empty:
        st.info("No runs yet — run `fabric run examples/digits.yaml` (or `make demo`) to create one.")
        return
    st.caption(f"{len(runs)} KPI report(s) in {ctx.reg.url}")
    st.dataframe(runs, hide_index=True, width="stretch")
    picked = _pick_run(ctx, "runs_run")
    if picked is None:
        return
    row, rep = picked
    st.subheader(f"Run {rep.get('spec', {}).get('name', row['spec'])}: {row['status']}")
    kpis = D.run_kpis(rep)
    cols = st.columns(max(1, len(kpis)))
    for c, k in zip(cols, kpis.itertuples(), strict=False):
        c.metric(f"{k.kind} accuracy", _fmt(k.accuracy, ".3f"), help=f"{k.mode}; status {k.status}",
                 delta="PASS" if k.passed else "FAIL", delta_color="normal" if k.passed else "inverse",
                 delta_arrow="off")
    st.markdown("**KPIs and gates per device kind** (latency: modelled device time for emulated kinds, measured for "
                "cpu; energy: modelled for every kind)")
    show = kpis.copy()
    for key, _, _ in D.KPI_METRICS:
        if key in show:
            show[key] = show[key].map(lambda v: _fmt(v, ".4g"))
    show["passed"] = show["passed"].map(lambda v: "PASS" if v else "FAIL")
    st.table(show.set_index("kind"))
    iv = D.kpi_intervals(rep)
    if not iv.empty:
        st.markdown(f"**Repeated seeds** ({int(iv['n'].max())} seeds, mean ± std "
                    f"[{iv['confidence'].iloc[0]:.0%} Student-t CI], test split)")
        st.table(iv.pivot_table(index="kind", columns="label", values="interval", aggfunc="first"))
    st.markdown("**Stages**")
    st.dataframe(D.run_stages(rep), hide_index=True, width="stretch")
    with st.expander("Spec"):
        st.json(rep.get("spec", {}))
    with st.expander("Report table as printed by `fabric run`"):
        st.code(rep.get("table", ""), language=None)


def page_model(ctx: Context) -> None:
    st.header("Model detail")
    picked = _pick_run(ctx, "model_run")
    if picked is None:
        return
    row, rep = picked
    st.subheader("NeuroBench metrics (trained model, float, test split, per sample)")
    nb = D.neurobench_table(rep)
    if nb.empty:
        st.info("This run stored no NeuroBench metrics.")
    else:
        st.table(nb.assign(value=nb["value"].map(lambda v: _fmt(v, ".5g"))).set_index("metric"))
    st.subheader("Fit reports (used vs device limit)")
    fit = D.fit_reports(ctx.reg, rep)
    if fit.empty:
        st.info("No compiled programs in this run.")
    else:
        st.dataframe(fit, hide_index=True, width="stretch")
    gold = D.golden_rows(ctx.reg, rep)
    if not gold.empty:
        st.subheader("Golden equivalence (device program vs reference simulator)")
        st.table(gold.set_index("kind"))
    st.subheader("Lineage")
    lin = D.lineage_rows(ctx.reg, row["report"])
    st.code("\n".join(f"{t}  {i[:12]}  signed {s}" for t, i, s in zip(lin["tree"], lin["id"], lin["signed by"],
                                                                       strict=True)), language=None)
    st.subheader("Artifacts (sha256, signature status)")
    if st.toggle("Re-verify every artifact of this run now (signature, bytes, parents)", value=True, key="verify"):
        ids = [row["report"]] + [s["artifact"] for s in rep.get("stages", [])]
        arts = D.artifact_rows(ctx.reg, ids)
        bad = int((arts["verified"] != "OK").sum())
        (st.error if bad else st.success)(f"{len(arts) - bad} of {len(arts)} artifacts verified"
                                          + (f"; {bad} REFUSED" if bad else ""))
        st.dataframe(arts, hide_index=True, width="stretch")


def _bars(df: pd.DataFrame, log: bool = False) -> alt.Chart:
    # a log-scale bar needs a positive baseline: a decade under the smallest value
    base = float(df["value"].min()) / 10 if log else 0.0
    return alt.Chart(df.assign(base=base)).mark_bar().encode(
        x=alt.X("kind:N", title=None), y=alt.Y("value:Q", title="log scale" if log else None,
                                               scale=alt.Scale(type="log") if log else alt.Undefined),
        y2="base:Q",
        color=alt.Color("mode:N", scale=alt.Scale(domain=list(D.FIGURE_MODES),
                                                  range=["#4c72b0", "#8fb0d8", "#dd8452"])),
        tooltip=["kind", "label", alt.Tooltip("value:Q", format=".4g"), "mode", "passed"],
    ).properties(height=220)


def _error_bars(df: pd.DataFrame, log: bool = False) -> alt.Chart:
    # the repeated-seed CI of each bar; a log axis cannot draw a bound <= 0, so it is clipped at the baseline
    part = df[df["ci_low"].notna()]
    if log:
        floor = float(df["value"].min()) / 10
        part = part.assign(ci_low=part["ci_low"].clip(lower=floor))
    return alt.Chart(part).mark_rule(color="black").encode(
        x="kind:N", y="ci_low:Q", y2="ci_high:Q",
        tooltip=["kind", alt.Tooltip("mean:Q", format=".4g"), alt.Tooltip("ci_low:Q", format=".4g"),
                 alt.Tooltip("ci_high:Q", format=".4g")])


def _band_bars(df: pd.DataFrame, log: bool = False) -> alt.Chart:
    # the constants' band [low, high] of a modelled figure (docs/measurement.md), drawn as a grey rule
    part = df[df["band_low"].notna() & (df["band_high"] > df["band_low"])]
    if log:
        part = part.assign(band_low=part["band_low"].clip(lower=float(df["value"].min()) / 10))
    return alt.Chart(part).mark_rule(color="#666", strokeWidth=3, opacity=0.6).encode(
        x="kind:N", y="band_low:Q", y2="band_high:Q",
        tooltip=["kind", alt.Tooltip("value:Q", format=".4g"), alt.Tooltip("band_low:Q", format=".4g"),
                 alt.Tooltip("band_high:Q", format=".4g")])


def page_compare(ctx: Context) -> None:
    st.header("Cross-device comparison")
    picked = _pick_run(ctx, "cmp_run")
    if picked is None:
        return
    _, rep = picked
    df = D.comparison(rep)
    if df.empty:
        st.warning("No device kind produced KPIs in this run (every target failed to fit).")
        return
    st.caption("Emulated kinds: latency and energy are modelled from the constants in actors/<kind>/constants.yaml "
               "(sources: `fabric devices --json`); cpu latency is measured, its energy modelled. Grey bars: "
               "the band of a modelled figure (its constants' low/high, docs/measurement.md); black: the "
               "repeated-seed confidence interval.")
    labels = list(dict.fromkeys(df["label"]))
    for i in range(0, len(labels), 2):
        cols = st.columns(2)
        for c, lab in zip(cols, labels[i:i + 2], strict=False):
            part = df[df["label"] == lab]
            # latency and energy span orders of magnitude between a CPU and a neuromorphic chip
            log = bool(by_name(part["metric"].iloc[0]).wide and (part["value"] > 0).all()
                       and part["value"].max() > 20 * part["value"].min())
            c.markdown(f"**{lab}**")
            chart = _bars(part, log)
            if part["band_low"].notna().any():  # modelled figures: the constants' band
                chart = chart + _band_bars(part, log)
            if part["ci_low"].notna().any():  # repeated seeds: the confidence interval as error bars
                chart = chart + _error_bars(part, log)
            c.altair_chart(chart, width="stretch")
    wide = df.pivot_table(index="kind", columns="metric", values="value").reset_index()
    st.table(wide.set_index("kind").map(lambda v: _fmt(v, ".4g")))


def page_automl(ctx: Context) -> None:
    st.header("AutoML")
    pl = listing(ctx, "list_pareto")
    if pl.empty:
        st.info("No tune runs yet — run `fabric tune SPEC` to search and store a Pareto front.")
        return
    i = st.selectbox("Experiment", range(len(pl)), key="pareto_pick",
                     format_func=lambda j: f"{pl.iloc[j]['experiment']} · {pl.iloc[j]['created']} · "
                     f"{pl.iloc[j]['pareto'][:10]}")
    doc = stored(ctx, pl.iloc[i]["pareto"])
    trials = D.pareto_trials(doc)
    st.caption(f"{len(trials)} (trial, kind) rows, {int(trials['on_front'].sum()) if not trials.empty else 0} on the "
               f"Pareto front; objectives {doc.get('objectives', D.PARETO_OBJECTIVES)}. {doc.get('notes', '')}")
    if trials.empty:
        st.warning("This experiment stored no trials.")
        return
    with st.form("constraints"):
        c = st.columns(4)
        acc = c[0].number_input("min accuracy", 0.0, 1.0, 0.0, 0.01)
        lat = c[1].number_input("max latency ms (0 = any)", 0.0, value=0.0)
        en = c[2].number_input("max energy mJ (0 = any)", 0.0, value=0.0, format="%.5f")
        fp = c[3].number_input("max footprint KB (0 = any)", 0.0, value=0.0)
        kinds = st.multiselect("device kinds", sorted(trials["kind"].dropna().unique()))
        st.form_submit_button("Apply constraints")
    ok = D.filter_trials(trials, min_accuracy=acc or None, max_latency_ms=lat or None, max_energy_mj=en or None,
                         max_footprint_kb=fp or None, kinds=kinds or None)
    x = st.selectbox("x axis", [o for o in D.PARETO_OBJECTIVES if o != "accuracy"], key="pareto_x")
    plot = trials.assign(meets=trials.index.isin(ok.index),
                         front=trials["on_front"].map({True: "on front", False: "dominated"}))
    chart = alt.Chart(plot.dropna(subset=[x, "accuracy"])).mark_point(filled=True, size=80).encode(
        x=alt.X(f"{x}:Q"), y=alt.Y("accuracy:Q", scale=alt.Scale(zero=False)),
        color=alt.Color("front:N", scale=alt.Scale(domain=["on front", "dominated"], range=["#c44e52", "#999999"])),
        shape="kind:N", opacity=alt.condition("datum.meets", alt.value(1.0), alt.value(0.25)),
        tooltip=["trial_id", "kind", *D.PARETO_OBJECTIVES, "config"])
    st.altair_chart(chart, width="stretch")
    st.markdown(f"**{len(ok)} trial(s) meet the constraints**")
    st.dataframe(ok, hide_index=True, width="stretch")
    cand = ok[ok["on_front"]] if ok["on_front"].any() else ok
    if cand.empty:
        st.warning("No trial meets these constraints: relax them or widen the search space.")
        return
    j = st.selectbox("Pick a model", range(len(cand)), key="pareto_model",
                     format_func=lambda k: f"{cand.iloc[k]['trial_id']} · {cand.iloc[k]['kind']} · accuracy "
                     f"{_fmt(cand.iloc[k]['accuracy'], '.3f')}")
    t = cand.iloc[j]
    st.success(f"Picked trial {t['trial_id']} on {t['kind']}: model {t['model_id']}, program {t['program_id']}")
    st.code(f"fabric registry lineage {str(t['program_id'] or t['model_id'])[:12]}", language="bash")


def page_serving(ctx: Context) -> None:
    st.header("Serving")
    auto = st.toggle("auto-refresh live status every 5 s", value=False, key="serve_auto")

    @st.fragment(run_every=5 if auto else None)
    def live() -> None:
        st.subheader("Live deployments")
        df, err = L.serve_status(ctx.serve_url, ctx.serve_token)
        if err:
            st.info(err)
            return
        if df.empty:
            st.info(f"Serve at {ctx.serve_url} has no deployments.")
            return
        cols = st.columns(len(df))
        for c, d in zip(cols, df.itertuples(), strict=True):
            c.metric(f"{d.version} ({d.kind}) p99 ms", _fmt(d.p99_ms, ".3g"),
                     help=f"weight {d.weight}, role {d.role}, {d.requests} requests")
        st.table(df.set_index("version"))
        st.markdown("**Traffic split**")
        st.altair_chart(alt.Chart(df).mark_arc().encode(theta="weight:Q", color="version:N",
                                                        tooltip=["version", "kind", "weight"]), width="content")
        with st.expander("Prometheus samples (/metrics)"):
            m, merr = L.serve_metrics(ctx.serve_url)
            if merr:
                st.info(merr)
            else:
                st.dataframe(m, hide_index=True, width="stretch")

    live()
    st.subheader("Stored deployments")
    deps = listing(ctx, "list_deployments")
    if deps.empty:
        st.info("No deployments stored yet — deploy a run with `fabric serve` (or the pipeline's deploy stage).")
    else:
        st.dataframe(deps, hide_index=True, width="stretch")
    st.subheader("Rollout history")
    ro = listing(ctx, "list_rollouts")
    if ro.empty:
        st.info("No rollouts yet — canary steps, promotions and rollbacks appear here once Serve stores them.")
    else:
        st.dataframe(ro, hide_index=True, width="stretch")


def page_devices(ctx: Context) -> None:
    st.header("Devices")
    st.subheader("Device kinds")
    st.table(L.device_catalog().set_index("kind"))
    st.subheader("Pool occupancy")
    occ, err = L.device_occupancy(ctx.ray_address)
    if err:
        st.info(err)
        return
    if occ is not None and not occ.empty:
        st.altair_chart(alt.Chart(occ).mark_bar().encode(
            x=alt.X("resource:N", title=None), y=alt.Y("occupancy %:Q", scale=alt.Scale(domain=[0, 100])),
            tooltip=["resource", "boards", "in use"]).properties(height=200), width="stretch")
    st.subheader("Device actors (health, calls, queue)")
    pools, err = L.device_pools(ctx.ray_address)
    if err:
        st.info(err)
    elif pools is None or pools.empty:
        st.info("No device actors yet — they start with the first `fabric run` against this cluster.")
    else:
        unhealthy = int((~pools["healthy"].astype(bool)).sum())
        (st.error if unhealthy else st.success)(f"{len(pools) - unhealthy} of {len(pools)} device actors healthy")
        st.table(pools.set_index("name"))


def page_drift(ctx: Context) -> None:
    st.header("Drift")
    dl = listing(ctx, "list_drift")
    if dl.empty:
        st.info("No drift reports yet — run `fabric drift --served ID --training ENCODING_ID` on stored served "
                "inputs.")
        return
    st.dataframe(dl, hide_index=True, width="stretch")
    i = st.selectbox("Drift report", range(len(dl)), key="drift_pick",
                     format_func=lambda j: f"{dl.iloc[j]['served']} · {dl.iloc[j]['created']} · {dl.iloc[j]['drift'][:10]}")
    doc = stored(ctx, dl.iloc[i]["drift"])
    if doc.get("retrain"):
        st.error(f"Retrain triggered: {doc.get('reason')}")
    else:
        st.success(f"No retrain: {doc.get('reason')}")
    pol = doc.get("policy", {})
    st.caption(f"{doc.get('test')}; policy alpha={pol.get('alpha')}, min KS statistic={pol.get('min_statistic')}; "
               f"{doc.get('samples', {}).get('served')} served vs {doc.get('samples', {}).get('training')} training "
               "samples")
    feats = D.drift_features(doc)
    st.table(feats.set_index("feature").map(lambda v: _fmt(v, ".4g") if isinstance(v, float) else v))
    cols = st.columns(2)
    for c, name in zip(cols, feats["feature"], strict=False):
        h = D.drift_histogram(doc, name)
        c.markdown(f"**{name.replace('_', ' ')}** (density)")
        c.altair_chart(alt.Chart(h).mark_line(interpolate="step-after").encode(
            x=alt.X("bin:Q", title=name), y="density:Q", color=alt.Color("set:N", scale=alt.Scale(
                domain=["train", "served"], range=["#4c72b0", "#c44e52"]))).properties(height=220), width="stretch")


PAGES = {"Runs": page_runs, "Model detail": page_model, "Cross-device": page_compare, "AutoML": page_automl,
         "Serving": page_serving, "Devices": page_devices, "Drift": page_drift}


def show_refused(ctx: Context) -> None:
    """Records the listings leave out because they failed verification, as refused rows on every page:
    a tampered record is shown as REFUSED, never silently dropped."""
    bad = listing(ctx, "refused_rows")
    if bad.empty:
        return
    st.error(f"{len(bad)} stored record(s) REFUSED: they failed verification and are not used by any page "
             "(`fabric registry verify-all` lists them too)")
    with st.expander("Refused records (id, kind, reason)"):
        st.dataframe(bad.assign(id=bad["id"].str[:12]), hide_index=True, width="stretch")


def render(ctx: Context, page: str) -> None:
    show_refused(ctx)
    PAGES[page](ctx)
