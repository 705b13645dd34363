"""The model zoo (issue #19 item 6) without Ray: publish a run -> list -> a ``model: {zoo: N}`` spec
deploys the same weights; versions; unknown names and tampered entries refused in one line."""

from __future__ import annotations

import json

import pytest

from fabric.flow.pipeline import run_pipeline
from fabric.flow.zoo import ZooError, entries, format_entries, publish, resolve
from fabric.spec import SpecError, parse_spec
from fabric.store.registry import IntegrityError, Registry
from tests.unit.local_pool import LocalPool


@pytest.fixture
def local(monkeypatch, tmp_path):
    import fabric.kinds

    monkeypatch.setattr(fabric.kinds, "device_pool", LocalPool)
    monkeypatch.setenv("FABRIC_LAVA_PYTHON", str(tmp_path / "no-such-python"))
    return Registry(str(tmp_path / "store"))


def _spec(**kw) -> object:
    d = {"name": "zoo-src", "dataset": {"name": "digits", "limit": 200}, "encoder": {"timesteps": 8},
         "targets": ["cpu"], "train": {"epochs": 1, "device": "cpu"}, "golden": {"samples": 0}, "seed": 1} | kw
    return parse_spec(d)


def _quiet(_: str) -> None:
    pass


def test_publish_ls_and_deploy_as_is_round_trip(local):
    s = run_pipeline(_spec(), local, progress=False, log=_quiet)
    trained = next(o.artifact for o in s.stages if o.stage == "train")
    e1 = publish(local, s.report_id, "digits-best")
    assert (e1.name, e1.version, e1.model_id, e1.kinds) == ("digits-best", 1, trained, ["cpu"])
    assert e1.kpis["cpu"]["accuracy"] == s.kpis[0].accuracy
    assert e1.programs["cpu"] == next(o.artifact for o in s.stages if o.stage == "compile[cpu]")
    e2 = publish(local, trained, "digits-best")  # by model id: the report that lists it is found
    assert e2.version == 2 and e2.model_id == trained and e2.report_id == s.report_id
    assert [e.version for e in entries(local, "digits-best")] == [1, 2]
    assert "digits-best" in format_entries(entries(local)) and "cpu 0." in format_entries(entries(local))

    spec = parse_spec({"name": "from-zoo", "dataset": {"name": "digits", "limit": 200},
                       "model": {"zoo": "digits-best", "version": 1}, "targets": ["cpu"],
                       "train": {"epochs": 0, "device": "cpu"}, "golden": {"samples": 0}, "seed": 1})
    z = run_pipeline(spec, local, progress=False, log=_quiet)
    stages = {o.stage: o.artifact for o in z.stages}
    assert "train" not in stages and stages["zoo"] == trained  # the same weights, not retrained
    assert local.get(stages["zoo"]) == local.get(trained)
    assert z.kpis[0].accuracy == s.kpis[0].accuracy  # same model, same encoder (from the entry), same data

    tuned = run_pipeline(spec.model_copy(update={"train": spec.train.model_copy(update={"epochs": 1})}), local,
                         progress=False, log=_quiet)
    tuned_id = next(o.artifact for o in tuned.stages if o.stage == "zoo")
    assert tuned_id != trained and trained in local.record(tuned_id).parents  # fine-tuned from the entry


def test_unknown_name_and_version_are_one_line(local):
    s = run_pipeline(_spec(), local, progress=False, log=_quiet)
    publish(local, s.report_id, "known-one")
    with pytest.raises(ZooError, match=r"no zoo entry 'nope' .*known: \['known-one'\]"):
        resolve(local, "nope")
    with pytest.raises(ZooError, match=r"has versions \[1\], not 3"):
        resolve(local, "known-one", 3)
    spec = parse_spec({"name": "x", "dataset": {"name": "digits", "limit": 200}, "model": {"zoo": "nope"},
                       "train": {"epochs": 0}})
    with pytest.raises(SpecError, match=r"model\.zoo: no zoo entry 'nope'") as exc:
        run_pipeline(spec, local, progress=False, log=_quiet)
    assert "\n" not in str(exc.value)
    with pytest.raises(ZooError, match="--name"):
        publish(local, s.report_id, "bad name")


def test_tampered_entry_is_refused(local, tmp_path):
    s = run_pipeline(_spec(), local, progress=False, log=_quiet)
    e = publish(local, s.report_id, "tamper")
    obj = next((tmp_path / "store" / "objects").rglob(e.id))
    doc = json.loads(obj.read_bytes())
    doc["kpis"]["cpu"]["accuracy"] = 1.0
    obj.write_bytes(json.dumps(doc).encode())
    with pytest.raises(IntegrityError, match="corrupt"):
        resolve(local, "tamper")
    rec = tmp_path / "store" / "records" / f"{e.id}.json"
    body = json.loads(rec.read_text())
    body["extra"]["accuracy"] = {"cpu": 1.0}
    rec.write_text(json.dumps(body))
    with pytest.raises(ZooError, match="failed verification"):
        resolve(local, "tamper")


def test_spec_zoo_field_rules():
    base = {"name": "x", "dataset": {"name": "digits"}}
    with pytest.raises(SpecError, match="model.zoo .* and model.module, not both"):
        parse_spec(base | {"model": {"zoo": "a", "module": "m.py:build"}})
    with pytest.raises(SpecError, match="version: only with model.zoo"):
        parse_spec(base | {"model": {"version": 2}})
    with pytest.raises(SpecError, match="train.epochs: must be >= 1"):
        parse_spec(base | {"train": {"epochs": 0}})
    with pytest.raises(SpecError, match="hidden"):
        parse_spec(base | {"model": {"zoo": "a", "hidden": [8]}})
    assert parse_spec(base | {"model": {"zoo": "a"}, "train": {"epochs": 0}}).model.source == "zoo"
    assert "zoo" not in parse_spec(base).to_dict()["model"]  # template specs keep their hash
