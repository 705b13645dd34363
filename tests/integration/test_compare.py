"""`fabric compare SPEC --kinds ...` runs the pipeline on the session cluster's device actors and
stores the cross-device table and plot; a kind that cannot take the model is a row with its reason."""

from __future__ import annotations

import json

from fabric.cli.main import main as cli_main
from fabric.store.registry import Registry


def test_compare_spec_on_device_actors(ray_session, tiny_spec_dict, tmp_path, capsys):
    spec = dict(tiny_spec_dict, name="cmp", model={"hidden": [20], "beta": 0.9, "threshold": 1.0})
    path = tmp_path / "cmp.json"
    path.write_text(json.dumps(spec))
    store = str(tmp_path / "store")
    rc = cli_main(["compare", str(path), "--kinds", "cpu,fpga,spinnaker", "--store", store, "--json", "--quiet"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    rows = {r["kind"]: r for r in out["rows"]}
    assert set(rows) == {"cpu", "fpga", "spinnaker"}
    assert rows["cpu"]["mode"] == "measured" and rows["spinnaker"]["mode"] == "modelled"
    assert rows["cpu"]["accuracy"] > 0.5  # digits, 10 classes
    assert abs(rows["spinnaker"]["accuracy"] - rows["cpu"]["accuracy"]) < 0.1
    assert rows["spinnaker"]["energy_mj"] > 0 and rows["spinnaker"]["latency_ms"] > 0
    reg = Registry(store)
    doc = reg.get_json(out["table_id"])
    report = reg.record(doc["report"])
    assert report.kind == "report" and reg.record(out["table_id"]).parents == [report.id]
    assert reg.get(out["plot_id"])[:4] == b"\x89PNG"
    # a second compare reuses the cached stages: the same figures, evaluated once
    rc = cli_main(["compare", str(path), "--kinds", "cpu,fpga,spinnaker", "--store", store, "--json", "--quiet"])
    assert rc == 0 and json.loads(capsys.readouterr().out)["rows"] == out["rows"]
    assert len(reg.ls("program")) == 3
