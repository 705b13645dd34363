import json
import subprocess
import sys

import pytest

from fabric.cli.main import main


def test_help_lists_commands(capsys):
    with pytest.raises(SystemExit) as ei:
        main(["--help"])
    assert ei.value.code == 0
    out = capsys.readouterr().out
    for cmd in ("run", "devices", "registry", "compile", "simulate"):
        assert cmd in out


def test_broken_spec_exits_nonzero_with_one_line_reason(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("name: bad\ndataset: {name: digits}\nmodel: {hidden: [64, -3]}\n")
    r = subprocess.run([sys.executable, "-m", "fabric.cli.main", "run", str(p), "--store", str(tmp_path / "s")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("fabric: error")]
    assert len(lines) == 1 and "model.hidden" in lines[0] and "must be > 0" in lines[0]
    assert not (tmp_path / "s").exists(), "nothing may run (or be stored) for a bad spec"


def test_devices_json_lists_kinds_with_sources(capsys):
    assert main(["devices", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    kinds = {i["kind"]: i for i in info}
    assert "cpu" in kinds
    for i in info:
        assert i["constants"], f"{i['kind']} has no constants with sources"
        assert all("—" in s for s in i["constants"].values())


def test_registry_unknown_id(tmp_path, capsys):
    assert main(["registry", "show", "abcdef12", "--store", str(tmp_path)]) == 4
    assert "no artifact 'abcdef12'" in capsys.readouterr().err
