"""Honest bands and one measurement protocol (issue #16 items 7 and 8): every constant carries a low/high
band the loader insists on, every kind's modelled figures come with low <= nominal <= high evaluated by
the same model at the band ends, a ranking is claimed only where bands do not overlap, and no source
names a file a user cannot open (neither a URL/DOI nor a file in the repository or an installed package)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from actors.base.energy import (
    ConstantsError,
    banded,
    load_constants,
    modelled_energy,
    parse_constants,
)
from fabric import kinds as K
from fabric.flow.compare import format_table, measure_graph
from fabric.kpis import ranking_claims, row_bands, row_from_telemetry
from fabric.records import Telemetry
from tests.unit.test_devices import dense_graph

ROOT = Path(__file__).resolve().parents[2]

GOOD = """
kind: toy
constants:
  e_syn_j: {value: 2.0e-9, low: 1.0e-9, high: 4.0e-9, unit: J, source: "made up", confidence: low}
"""


# -- the loader -------------------------------------------------------------------------------------
def test_loader_reads_the_band():
    c = parse_constants(GOOD, "toy/constants.yaml").constants["e_syn_j"]
    assert (c.low, c.value, c.high) == (1.0e-9, 2.0e-9, 4.0e-9)


@pytest.mark.parametrize("drop", ["low", "high"])
def test_loader_refuses_a_missing_band_naming_file_and_key(drop):
    text = GOOD.replace(f" {drop}: {'1.0e-9' if drop == 'low' else '4.0e-9'},", "")
    assert drop + ":" not in text.split("constants:")[1]
    with pytest.raises(ConstantsError, match=rf"toy/constants.yaml: constant 'e_syn_j' has no {drop}"):
        parse_constants(text, "toy/constants.yaml")


@pytest.mark.parametrize("low,high", [("2.1e-9", "4.0e-9"), ("1.0e-9", "1.9e-9")])
def test_loader_refuses_a_band_that_does_not_hold_its_value(low, high):
    text = GOOD.replace("low: 1.0e-9", f"low: {low}").replace("high: 4.0e-9", f"high: {high}")
    with pytest.raises(ConstantsError, match=r"'e_syn_j' band must satisfy low <= value <= high"):
        parse_constants(text, "toy/constants.yaml")


def test_every_shipped_constant_has_a_band_with_its_reasoning():
    for kind in K.kinds():
        path = ROOT / K.kind_package(kind).replace(".", "/") / "constants.yaml"
        doc = yaml.safe_load(path.read_text())
        for key, c in doc["constants"].items():
            assert float(c["low"]) <= float(c["value"]) <= float(c["high"]), (kind, key)
            assert c.get("band"), f"{path.name} ({kind}) {key}: no reasoning for its band"
        load_constants(kind)  # the strict loader accepts every shipped file


def test_band_ends_flip_for_rates():
    c = load_constants("akida")
    assert c.at("low").value("ops_per_s") == c.constants["ops_per_s"].high  # a faster rate: lower latency
    assert c.at("low").value("e_syn_j") == c.constants["e_syn_j"].low
    with pytest.raises(ValueError, match="band end must be"):
        c.at("middle")


def test_banded_refuses_a_model_that_is_not_monotone():
    c = parse_constants(GOOD, "toy/constants.yaml")
    ok = banded(lambda k: (1.0, modelled_energy(acs=10, e_syn_j=k.value("e_syn_j"))), c)
    assert ok[2]["energy_j"] == [1.0e-8, 4.0e-8]
    with pytest.raises(ValueError, match="not monotone"):
        banded(lambda k: (1.0, modelled_energy(acs=10, e_syn_j=6.0e-9 - k.value("e_syn_j"))), c)


# -- every kind on a real compiled program ------------------------------------------------------------
@pytest.fixture(scope="module")
def ff() -> tuple:
    rng = np.random.default_rng(1)
    x = (rng.random((6, 10, 12)) < 0.3).astype(np.float32)
    return dense_graph([12, 16, 4], seed=2), x, rng.integers(0, 4, 6)


@pytest.mark.parametrize("kind", K.kinds())
def test_low_nominal_high_for_every_kind_on_a_compiled_program(kind, ff):
    g, x, y = ff
    rt = K.make_runtime(kind)
    rt.load(rt.compile(g))
    res = rt.run(x)
    tel = res.telemetry
    e_lo, e_hi = tel.bands["energy_j"]
    t_lo, t_hi = tel.bands["device_time_s"]
    assert e_lo <= tel.energy_j <= e_hi and t_lo <= tel.device_time_s <= t_hi, tel.bands
    assert e_lo < e_hi, f"{kind}: energy band has no width although its constants are uncertain"
    probe = [rt.run(x[i:i + 1]).telemetry for i in range(3)]
    row = row_from_telemetry([tel], probe, res.predictions, y) | row_bands([tel], probe)
    assert row["energy_mj_low"] <= row["energy_mj"] <= row["energy_mj_high"]
    assert row["latency_p50_ms_low"] <= row["latency_p50_ms"] <= row["latency_p50_ms_high"]
    caps = K.capabilities(kind)
    assert row["time_mode"] == caps.time_mode and row["basis"]["energy"] == "modelled"
    assert row["basis"]["latency_p50"] == caps.latency
    if not caps.emulated:  # cpu: measured latency, so no latency band; energy from the same batch-1 regime
        assert row["latency_p50_ms_low"] == row["latency_p50_ms"] == row["latency_p50_ms_high"]
        assert row["energy_mj"] == pytest.approx(np.mean([t.energy_j for t in probe]) * 1e3)


def test_no_kind_has_zero_static_power_at_its_nominal_or_low_end(ff):
    g, x, _ = ff
    for kind in K.kinds():
        rt = K.make_runtime(kind)
        rt.load(rt.compile(g))
        tel = rt.run(x[:2]).telemetry
        assert tel.bands["static_j"][0] > 0, f"{kind}: 0 J static energy"


def test_frame_kind_latency_includes_the_accumulation_window(ff):
    g, x, _ = ff
    rt = K.make_runtime("akida")
    rt.load(rt.compile(g))
    tel = rt.run(x[:1]).telemetry
    window = x.shape[1] * float(rt.program.meta["dt"])
    assert tel.device_time_s > window and tel.bands["device_time_s"][0] > window


# -- the ranking rule ---------------------------------------------------------------------------------
def _r(kind: str, v: float, lo: float, hi: float) -> dict:
    return {"kind": kind, "status": "ok", "energy_mj": v, "energy_mj_low": lo, "energy_mj_high": hi}


def test_ranking_is_claimed_only_where_bands_do_not_overlap():
    apart = ranking_claims([_r("b", 5.0, 4.0, 6.0), _r("a", 1.0, 0.5, 2.0)], "energy_mj")
    assert len(apart) == 1 and apart[0].startswith("a beats b on energy") and "no ranking" not in apart[0]
    touching = ranking_claims([_r("b", 5.0, 2.0, 6.0), _r("a", 1.0, 0.5, 2.0)], "energy_mj")
    assert len(touching) == 1 and "overlapping bands: no ranking" in touching[0] and "beats" not in touching[0]
    wide = ranking_claims([_r("b", 5.0, 0.9, 6.0), _r("a", 1.0, 0.5, 2.0)], "energy_mj")
    assert "overlapping bands: no ranking" in wide[0]


def test_compare_table_shows_bands_time_modes_and_the_ranking_rule(ff):
    g, x, y = ff
    rows = measure_graph(g, x, y, ["cpu", "loihi", "spinnaker"])
    table = format_table(rows)
    assert "bands [low, high]" in table and "time mode as-fast-as-possible" in table and "time mode host" in table
    for r in rows:
        assert r["energy_mj_low"] <= r["energy_mj"] <= r["energy_mj_high"]
    claims = [line for line in table.splitlines() if " beats " in line or "no ranking" in line]
    assert len(claims) == 4  # two neighbour pairs x (energy, latency)
    for line in claims:
        lo_a, hi_a, lo_b, hi_b = map(float, re.findall(r"\[([^,\]]+), ([^\]]+)\]", line.split("(", 1)[1])[0]
                                     + re.findall(r"\[([^,\]]+), ([^\]]+)\]", line.split("(", 1)[1])[1])
        assert (" beats " in line) == (hi_a < lo_b or lo_a > hi_b), line


def test_report_markdown_and_png_carry_the_band():
    from fabric.report import render_kpi_png, render_markdown

    def row(kind: str, em: bool, e: float, lo: float, hi: float) -> dict:
        return {"kind": kind, "status": "ok", "emulated": em, "accuracy": 0.9, "latency_p50_ms": 1.0,
                "latency_p99_ms": 1.0, "host_p50_ms": 1.0, "energy_mj": e, "energy_mj_low": lo, "energy_mj_high": hi,
                "latency_p50_ms_low": 1.0, "latency_p50_ms_high": 1.0, "latency_p99_ms_low": 1.0,
                "latency_p99_ms_high": 1.0, "spikes_per_inference": 1.0, "synops_per_inference": 1.0,
                "footprint_kb": 1.0, "gates": {}, "time_mode": "host" if not em else "realtime", "sources": {}}
    kpis = [row("cpu", False, 1.0, 0.8, 2.0), row("fpga", True, 0.1, 0.05, 0.2)]
    spec = {"name": "t", "dataset": {"name": "digits"}, "encoder": {"name": "rate", "timesteps": 5},
            "targets": ["cpu", "fpga"]}
    md = render_markdown({"spec": spec, "spec_hash": "x" * 12, "kpis": kpis, "stages": []})
    assert "## Bands and time modes" in md and "1 [0.8, 2] (modelled)" in md
    assert "fpga beats cpu on energy" in md and "overlapping bands: no ranking" in md  # latency bands equal
    assert render_kpi_png(kpis, "t")[:4] == b"\x89PNG"


# -- sources a user can check -------------------------------------------------------------------------
# a token that names a file (a name with a file extension, with or without folders) or a folder ("seeds/")
_PATHLIKE = re.compile(r"(?<![\w/.-])((?:\.\./|[\w.-]+/)*[\w-]+\.(?:md|txt|py|yaml|yml|h|c|cpp|json|toml|pdf|npz)"
                       r"|(?:\.\./)?[\w-]+/(?=[\s,;)]|$))")
_URL = re.compile(r"https?://\S+|\bDOI\s*10\.\d{4,}/\S+|\b10\.\d{4,}/\S+|arXiv:\s*\d{4}\.\d+", re.IGNORECASE)
# where installed packages live: this interpreter's, and the reference toolchains' own environments
_SITES = [Path(p) for p in sys.path if p.endswith("site-packages")] + sorted(ROOT.glob("toolchains/*/.venv/lib/python*/site-packages"))


def _installed(path: str) -> bool:
    """``path`` is a file inside the repository or inside an installed package."""
    return any((base / path).exists() for base in (ROOT, *_SITES))


def unchecked_paths(text: str) -> list[str]:
    """File names in ``text`` a user cannot open: neither inside a URL/DOI/arXiv id nor an existing file
    of the repository or an installed package. A bare file name passes when the same text names its
    folder (``validate.py`` next to ``nengo_loihi/validate.py``)."""
    rest = _URL.sub(" ", text)
    bad = []
    for m in _PATHLIKE.findall(rest):
        if _installed(m):
            continue
        if "/" not in m and re.search(rf"[\w.-]+/{re.escape(m)}", text) and any(
                _installed(f) for f in re.findall(rf"[\w./-]+/{re.escape(m)}", text)):
            continue
        bad.append(m)
    return bad


def _strings(node: object) -> list[str]:
    if isinstance(node, dict):
        return [s for v in node.values() for s in _strings(v)]
    if isinstance(node, list):
        return [s for v in node for s in _strings(v)]
    return [node] if isinstance(node, str) else []


def test_the_path_check_catches_outside_files_and_passes_checkable_ones():
    for bad in ("see devices.md", "../shared/seeds/003.txt §2", "design.md §4", "seeds/000_abc.txt"):
        assert unchecked_paths(bad), bad
    for good in ("file sanafe/examples/loihi.yaml in the sanafe package", "DOI 10.1109/MM.2018.112130359",
                 "https://github.com/SLAM-Lab/SANA-FE", "arXiv:2409.14918", "actors/loihi/constants.yaml"):
        assert not unchecked_paths(good), good


@pytest.mark.parametrize("kind", K.kinds())
def test_constants_sources_name_only_checkable_files(kind):
    doc = yaml.safe_load((ROOT / K.kind_package(kind).replace(".", "/") / "constants.yaml").read_text())
    bad = {k: unchecked_paths(c["source"]) for k, c in doc["constants"].items() if unchecked_paths(c["source"])}
    assert not bad, f"{kind}: sources naming files a user cannot open: {bad}"


def test_fabric_devices_json_names_only_checkable_files():
    r = subprocess.run([sys.executable, "-m", "fabric.cli.main", "devices", "--json"], capture_output=True,
                       text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stderr
    bad = sorted({p for s in _strings(json.loads(r.stdout)) for p in unchecked_paths(s)})
    assert not bad, bad


def test_telemetry_without_bands_still_loads():
    d = Telemetry(kind="cpu", emulated=False, samples=1, timesteps=1, spikes_in=0, spikes_out=0, spikes_per_layer={},
                  synaptic_ops=0.0, neuron_updates=0.0, host_latency_s=0.0, device_time_s=0.0, energy_j=0.0,
                  footprint_bytes=0).to_dict()
    d.pop("bands")
    assert Telemetry.from_dict(d).bands == {}
