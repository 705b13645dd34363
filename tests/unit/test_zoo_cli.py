"""``fabric zoo publish / ls / show`` driven through the CLI's ``main(argv)`` in-process (no Ray):
publish a run -> ls -> show -> a ``model: {zoo: N}`` spec deploys the same weights; bad input and
tampered entries are one-line errors with the documented exit codes."""

from __future__ import annotations

import json

import pytest

from fabric.cli.main import main
from fabric.flow.pipeline import run_pipeline
from fabric.spec import parse_spec
from tests.unit.test_zoo import _quiet, _spec, local  # noqa: F401  (local: the no-Ray registry fixture)


def _err(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("fabric: error: ") and "\n" not in err
    return err


def test_publish_ls_show_and_spec_round_trip(local, capsys):  # noqa: F811
    store = ["--store", local.url]
    s = run_pipeline(_spec(), local, progress=False, log=_quiet)
    trained = next(o.artifact for o in s.stages if o.stage == "train")
    capsys.readouterr()

    assert main(["zoo", "publish", s.report_id[:12], "--name", "digits-cli", *store]) == 0
    out = capsys.readouterr().out
    acc = f"{s.kpis[0].accuracy:.3f}"
    assert "digits-cli v1" in out and "kinds cpu" in out and f"cpu {acc}" in out

    assert main(["zoo", "publish", trained[:10], "--name", "digits-cli", "--json", *store]) == 0
    e2 = json.loads(capsys.readouterr().out)
    assert (e2["version"], e2["model_id"], e2["report_id"]) == (2, trained, s.report_id)

    assert main(["zoo", "ls", *store]) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = [ln for ln in lines if ln.startswith("digits-cli")]
    assert len(rows) == 2 and all(f"cpu {acc}" in r for r in rows) and "2 zoo entries" in lines[-1]
    assert main(["zoo", "ls", "--json", *store]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(e["name"], e["version"]) for e in listed["entries"]] == [("digits-cli", 1), ("digits-cli", 2)]
    assert listed["refused"] == []

    assert main(["zoo", "show", "digits-cli", "--version", "1", "--json", *store]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["version"] == 1 and shown["model_id"] == trained and shown["kpis"]["cpu"]["accuracy"] == s.kpis[0].accuracy
    assert main(["zoo", "show", "digits-cli", *store]) == 0
    text = capsys.readouterr().out
    assert "digits-cli v2" in text and trained in text and "model: {zoo: digits-cli, version: 2}" in text

    spec = parse_spec({"name": "from-zoo-cli", "dataset": {"name": "digits", "limit": 200},
                       "model": {"zoo": "digits-cli"}, "targets": ["cpu"],
                       "train": {"epochs": 0, "device": "cpu"}, "golden": {"samples": 0}, "seed": 1})
    z = run_pipeline(spec, local, progress=False, log=_quiet)
    zoo_model = next(o.artifact for o in z.stages if o.stage == "zoo")
    assert zoo_model == trained and local.get(zoo_model) == local.get(trained)
    assert z.kpis[0].accuracy == s.kpis[0].accuracy


def test_bad_input_is_one_line_with_exit_codes(local, capsys):  # noqa: F811
    store = ["--store", local.url]
    s = run_pipeline(_spec(), local, progress=False, log=_quiet)
    assert main(["zoo", "publish", s.report_id, "--name", "known", *store]) == 0
    capsys.readouterr()
    assert main(["zoo", "show", "nope", *store]) == 2
    assert "no zoo entry 'nope'" in (err := _err(capsys)) and "known: ['known']" in err
    assert main(["zoo", "show", "known", "--version", "2", *store]) == 2
    assert "has versions [1], not 2" in _err(capsys)
    assert main(["zoo", "publish", s.report_id, "--name", "bad name", *store]) == 2
    assert "--name" in _err(capsys)
    assert main(["zoo", "publish", "abcdef123456", "--name", "x", *store]) == 4
    assert "no artifact 'abcdef123456'" in _err(capsys)
    enc = next(o.artifact for o in s.stages if o.stage == "encode")
    assert main(["zoo", "publish", enc, "--name", "x", *store]) == 2
    assert "is a encoding; publish a model, deployment or run report" in _err(capsys)
    with pytest.raises(SystemExit) as exc:
        main(["zoo", "publish", s.report_id, *store])  # --name is required
    assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:
        main(["zoo", "--help"])
    assert exc.value.code == 0 and "model: {zoo: digits-mlp}" in capsys.readouterr().out


def test_tampered_entry_is_refused_by_show_and_ls(local, tmp_path, capsys):  # noqa: F811
    store = ["--store", local.url]
    s = run_pipeline(_spec(), local, progress=False, log=_quiet)
    assert main(["zoo", "publish", s.report_id, "--name", "good", *store]) == 0
    capsys.readouterr()
    assert main(["zoo", "publish", s.report_id, "--name", "tamper", "--json", *store]) == 0
    bad_id = json.loads(capsys.readouterr().out)["id"]
    obj = next((tmp_path / "store" / "objects").rglob(bad_id))
    doc = json.loads(obj.read_bytes())
    doc["kpis"]["cpu"]["accuracy"] = 1.0
    obj.write_bytes(json.dumps(doc).encode())

    assert main(["zoo", "show", "tamper", *store]) == 4
    assert "corrupt" in _err(capsys)
    assert main(["zoo", "ls", *store]) == 4  # the good entry is listed, the tampered one named on stderr
    out, err = capsys.readouterr()
    assert any(ln.startswith("good") for ln in out.splitlines())
    assert not any(ln.startswith("tamper") for ln in out.splitlines())
    assert err.startswith("fabric: error: 1 zoo entry refused: " + bad_id[:12]) and "\n" not in err.strip()
    assert main(["zoo", "show", "good", *store]) == 0
