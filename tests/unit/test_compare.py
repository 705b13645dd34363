"""fabric compare's pure parts: rows from runs and from KPI reports, the table, the plot, the CLI's
.nir path (in-process runtimes, no Ray) and its one-line errors."""

from __future__ import annotations

import json

import nir
import numpy as np
import pytest

from fabric.cli.main import main as cli_main
from fabric.flow.compare import format_table, measure_graph, parse_kinds, render_png, rows_from_kpis
from fabric.ir.recurrent import build_recurrent_graph
from fabric.store.registry import Registry


@pytest.fixture(scope="module")
def rnn() -> tuple[nir.NIRGraph, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    g = build_recurrent_graph(rng.normal(0, 0.4, (16, 20)), rng.normal(0, 0.1, (16, 16)), rng.normal(0, 0.5, (4, 16)),
                              b_in=np.full(16, 0.02))
    x = (rng.random((30, 8, 20)) < 0.3).astype(np.float32)
    return g, x, rng.integers(0, 4, 30)


def test_parse_kinds():
    assert parse_kinds("all") == ["cpu", "loihi", "akida", "spinnaker", "fpga", "dynapse", "xylo"]
    assert parse_kinds("fpga, cpu,fpga") == ["fpga", "cpu"]
    with pytest.raises(ValueError, match="unknown device kind.*'tpu'"):
        parse_kinds("cpu,tpu")


def test_measure_graph_rows_name_refusals_and_hybrid(rnn):
    g, x, y = rnn
    rows = {r["kind"]: r for r in measure_graph(g, x, y, ["cpu", "akida", "fpga"])}
    assert rows["cpu"]["status"] == "ok" and rows["cpu"]["mode"] == "measured"
    assert rows["fpga"]["status"] == "ok" and rows["fpga"]["mode"] == "modelled"
    assert rows["akida"]["status"] == "does not fit" and "recurrent layers" in rows["akida"]["reason"]
    for r in (rows["cpu"], rows["fpga"]):
        assert 0 <= r["accuracy"] <= 1 and r["energy_mj"] > 0 and r["latency_ms"] > 0 and r["footprint_kb"] > 0
    hyb = {r["kind"]: r for r in measure_graph(g, x, y, ["akida"], fallback="hybrid")}["akida"]
    assert hyb["status"] == "hybrid" and "ran on cpu" in hyb["reason"] and hyb["accuracy"] is not None
    table = format_table(list(rows.values()))
    assert "does not fit" in table and "reasons:" in table and "akida: does not fit akida: recurrent" in table
    assert "modelled = emulated device" in table


def test_rows_from_kpis_keeps_failures_with_reason():
    rows = rows_from_kpis([
        {"kind": "cpu", "status": "ok", "emulated": False, "accuracy": 0.9, "latency_p50_ms": 1.0, "energy_mj": 0.5,
         "footprint_kb": 10.0, "synops_per_inference": 100.0, "sources": {}},
        {"kind": "fpga", "status": "does not fit", "reason": "does not fit fpga: output neurons 20 > 16"},
    ])
    assert rows[0]["mode"] == "measured" and rows[0]["latency_ms"] == 1.0
    assert rows[1]["status"] == "does not fit" and "output neurons" in rows[1]["reason"]


def test_render_png_is_a_png_with_missing_kinds():
    rows = rows_from_kpis([{"kind": "cpu", "status": "ok", "emulated": False, "accuracy": 0.9, "latency_p50_ms": 1.0,
                            "energy_mj": 0.5, "footprint_kb": 10.0},
                           {"kind": "loihi", "status": "ok", "emulated": True, "accuracy": 0.88, "latency_p50_ms": 0.01,
                            "energy_mj": 1e-4, "footprint_kb": 4.0},
                           {"kind": "akida", "status": "does not fit", "reason": "x"}])
    png = render_png(rows, "t")
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000


def test_cli_nir_path_stores_table_and_plot(rnn, tmp_path, capsys):
    g, x, y = rnn
    nir.write(tmp_path / "rnn.nir", g)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    store = str(tmp_path / "store")
    rc = cli_main(["compare", str(tmp_path / "rnn.nir"), "--kinds", "cpu,akida,spinnaker", "--input",
                   str(tmp_path / "x.npy"), "--labels", str(tmp_path / "y.npy"), "--store", store, "--json", "--quiet"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    reg = Registry(store)
    doc = reg.get_json(out["table_id"])
    assert [r["kind"] for r in doc["rows"]] == ["cpu", "akida", "spinnaker"]
    assert doc["rows"][1]["status"] == "does not fit"
    assert reg.record(out["plot_id"]).parents == [out["table_id"]]
    assert reg.record(out["table_id"]).parents == [doc["nir"]] and reg.record(doc["nir"]).kind == "nir"
    assert reg.get(out["plot_id"])[:4] == b"\x89PNG"


@pytest.mark.parametrize("args,msg", [
    (["--kinds", "cpu,tpu"], "unknown device kind"),
    ([], "needs test inputs"),
    (["--input", "X"], "--input and --labels go together"),
    (["--dataset", "digits"], "encodes to 64 inputs but the graph takes 20"),
])
def test_cli_bad_input_is_one_line_exit_2(args, msg, rnn, tmp_path, capsys):
    nir.write(tmp_path / "rnn.nir", rnn[0])
    rc = cli_main(["compare", str(tmp_path / "rnn.nir"), "--store", str(tmp_path / "s"), *args])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and msg in err and len(err.splitlines()) == 1
