"""The registry and the whole pipeline on ``s3://`` against a real S3-protocol server on loopback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from fabric.spec import parse_spec
from fabric.store.registry import ArtifactNotFound, IntegrityError, Registry
from tests.s3server import s3_endpoint, s3_url

pytestmark = pytest.mark.integration
FIXTURES = (s3_endpoint, s3_url)  # the loopback S3 server; harmless if conftest.py imports them too
REPO = str(Path(__file__).resolve().parents[2])


def test_registry_on_s3_is_signed_verified_and_tenant_isolated(s3_url):
    reg = Registry(s3_url)
    d = reg.put(b"rows" * 100, kind="dataset", name="d")
    big = np.random.default_rng(0).bytes(6 << 20)  # streamed: spooled locally, then one upload
    m = reg.put((big[i:i + (1 << 20)] for i in range(0, len(big), 1 << 20)), kind="model", name="m", parents=[d.id])
    assert reg.get(m.id) == big and reg.record(m.id).parents == [d.id]
    assert all(v["ok"] for v in reg.verify_all())
    fs = reg.store.fs
    assert fs.exists(reg.store.path(f"keys/{reg.signer.key_id}.pub"))
    assert not any(k.endswith(".pem") for k in fs.find(reg.store.root)), "no private key in the bucket"

    other = Registry(s3_url, tenant="b")
    assert other.ls() == []
    with pytest.raises(ArtifactNotFound):
        other.get(d.id)

    p = reg.store.path(reg._okey(d.id))
    data = bytearray(fs.cat_file(p))
    data[7] ^= 0x20
    fs.pipe_file(p, bytes(data))
    with pytest.raises(IntegrityError, match="corrupt"):
        reg.get(d.id)
    r = reg.store.path(reg._rkey(m.id))
    fs.pipe_file(r, fs.cat_file(r).replace(b'"name": "m"', b'"name": "x"'))
    with pytest.raises(IntegrityError, match="signature .* does not match"):
        reg.record(m.id)



def test_tenant_bytes_in_the_bucket_are_encrypted_and_need_the_credential(s3_url, tmp_path, monkeypatch):
    from fabric.store.registry import TenantError
    from fabric.store.tenants import ENV_TENANT_KEY, TenantCredential

    monkeypatch.delenv(ENV_TENANT_KEY, raising=False)
    secret = b"tenant-s3-secret" * 4096
    a = Registry(s3_url, tenant="s3-a")  # this host is the admin: the first write issues the tenant
    big = secret * 40  # > 1 MiB: several encrypted segments, streamed to the bucket
    rec = a.put((big[i:i + (1 << 19)] for i in range(0, len(big), 1 << 19)), kind="model", name="s3-model")
    assert a.get(rec.id) == big and Registry(s3_url, tenant="s3-a").get(rec.id) == big
    fs = a.store.fs
    for key in fs.find(f"{a.store.root}/tenants/s3-a"):
        blob = fs.cat_file(key)
        assert secret[:32] not in blob and b"s3-model" not in blob, key
    other = tmp_path / "other.key"
    TenantCredential.generate("s3-a").save(other)
    monkeypatch.setenv(ENV_TENANT_KEY, str(other))
    with pytest.raises(TenantError, match="is not the one issued"):
        Registry(s3_url, tenant="s3-a").get(rec.id)


_WRITER = """
import json, sys
from fabric.store.registry import Registry
reg = Registry(sys.argv[1])
w = int(sys.argv[2])
ids = [reg.put(b"shared" * 500, kind="dataset", name="shared").id]
for i in range(4):
    ids.append(reg.put(f"w{w}-{i}".encode() * 2000, kind="model", name=f"w{w}-{i}", parents=[ids[0]]).id)
print(json.dumps(ids))
"""


def test_concurrent_writer_processes_on_s3(s3_url, tmp_path):
    Registry(s3_url).signer  # noqa: B018  (create the key once; the processes share it through the env)
    env = dict(os.environ, PYTHONPATH=REPO)
    procs = [subprocess.Popen([sys.executable, "-c", textwrap.dedent(_WRITER), s3_url, str(w)], env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for w in range(8)]
    ids: set[str] = set()
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err[-2000:]
        ids |= set(json.loads(out.strip().splitlines()[-1]))
    results = Registry(s3_url).verify_all()
    assert len(ids) == 1 + 8 * 4 and ids <= {v["id"] for v in results}
    assert all(v["ok"] for v in results), [v for v in results if not v["ok"]]


SPEC = {
    "name": "s3tiny", "dataset": {"name": "digits", "limit": 300, "test_fraction": 0.25},
    "encoder": {"name": "rate", "timesteps": 8}, "model": {"hidden": [16]},
    "train": {"epochs": 1, "batch_size": 32, "lr": 0.01, "device": "cpu"}, "targets": ["cpu"], "seed": 2,
}


def test_pipeline_runs_unchanged_on_s3_and_rerun_reuses_every_artifact(ray_session, s3_url):
    from fabric.flow.pipeline import run_pipeline

    spec = parse_spec(SPEC)
    reg = Registry(s3_url)
    first = run_pipeline(spec, reg, progress=False, log=lambda s: None)
    assert first.stages and not any(o.cached for o in first.stages)
    assert first.kpis[0].status == "ok" and first.kpis[0].accuracy > 0.2
    kinds = {r.kind for r in reg.ls()}
    assert {"dataset", "encoding", "model", "nir", "program", "report", "sbom"} <= kinds
    assert all(v["ok"] for v in reg.verify_all())

    again = run_pipeline(spec, Registry(s3_url), progress=False, log=lambda s: None)
    assert [o.stage for o in again.stages] == [o.stage for o in first.stages]
    assert all(o.cached for o in again.stages), [o.stage for o in again.stages if not o.cached]
    assert [o.artifact for o in again.stages] == [o.artifact for o in first.stages]
    assert again.kpis[0].accuracy == first.kpis[0].accuracy


def test_ray_workers_write_concurrently(ray_session, store_dir):
    import ray

    reg = Registry(store_dir)
    root = reg.put(b"root", kind="dataset", name="root")

    @ray.remote(num_cpus=0)
    def write(registry: Registry, w: int, parent: str) -> list[str]:
        return [registry.put(f"ray-{w}-{i}".encode() * 1000, kind="model", name=f"r{w}-{i}", parents=[parent]).id
                for i in range(5)] + [registry.put(b"same-from-every-worker", kind="report", name="same").id]

    ids = set().union(*ray.get([write.remote(reg, w, root.id) for w in range(6)]))
    results = Registry(store_dir).verify_all()
    assert len(ids) == 6 * 5 + 1 and ids <= {v["id"] for v in results}
    assert all(v["ok"] for v in results)
