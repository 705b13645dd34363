"""The registry's trust contract: signed records, verified bytes, atomic writes, tenant isolation."""

from __future__ import annotations

import io
import json
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from fabric.cli.main import main
from fabric.store.registry import ArtifactNotFound, IntegrityError, Registry
from fabric.store.signing import SignatureError, Signer

REPO = str(Path(__file__).resolve().parents[2])


@pytest.fixture
def reg(store_dir, monkeypatch) -> Registry:
    monkeypatch.delenv("FABRIC_SIGNING_KEY", raising=False)
    monkeypatch.delenv("FABRIC_TRUSTED_KEYS", raising=False)
    monkeypatch.delenv("FABRIC_TENANT", raising=False)
    return Registry(store_dir)


def _obj(reg: Registry, aid: str) -> Path:
    return Path(reg.store.path(reg._okey(aid)))


def _rec(reg: Registry, aid: str) -> Path:
    return Path(reg.store.path(reg._rkey(aid)))


def _child(script: str, *args: str, **kw) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=REPO)
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(script), *args], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)


# -- records and bytes ---------------------------------------------------------------------------
def test_put_get_record_carries_provenance_and_signature(reg):
    d = reg.put(b"data", kind="dataset", name="d", seeds={"seed": 3})
    m = reg.put(b"model", kind="model", name="m", parents=[d.id[:8]], spec_hash="ab" * 32, device_id="loihi:0")
    assert reg.get(m.id) == b"model" and reg.get(m.id[:10]) == b"model"
    r = reg.record(m.id)
    assert r.parents == [d.id] and r.spec_hash == "ab" * 32 and r.device_id == "loihi:0"
    assert r.code_version and r.sbom and reg.record(r.sbom).kind == "sbom" and r.created > 0
    assert r.tenant == "default" and r.signature["alg"] == "ed25519" and r.signature["key"] == reg.signer.key_id
    assert reg.record(d.id).seeds == {"seed": 3}
    assert reg.put(b"model", kind="model", name="other", parents=[d.id]).name == "m", "first record is kept"
    assert reg.verify(m.id)["ok"]
    assert [n["record"].kind for n in reg.lineage(m.id)["parents"]] == ["dataset"]


def test_flip_one_byte_in_stored_artifact_is_refused_and_reput_repairs(reg):
    blob = np.random.default_rng(0).bytes(4096)
    rec = reg.put(blob, kind="model", name="m")
    p = _obj(reg, rec.id)
    data = bytearray(p.read_bytes())
    data[1234] ^= 0x01
    p.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match=f"artifact {rec.id[:12]}.*corrupt.*refusing"):
        reg.get(rec.id)
    v = reg.verify(rec.id)
    assert not v["ok"] and "corrupt" in v["reason"]
    reg.put(blob, kind="model", name="m")  # the writer has the true bytes: a re-put repairs the object
    assert reg.get(rec.id) == blob


def test_truncated_artifact_and_missing_bytes_are_refused(reg):
    rec = reg.put(b"x" * 1000, kind="dataset", name="d")
    p = _obj(reg, rec.id)
    p.write_bytes(p.read_bytes()[:500])
    with pytest.raises(IntegrityError, match="500 bytes, record says 1000"):
        reg.get(rec.id)
    p.unlink()
    with pytest.raises(IntegrityError, match="bytes are missing"):
        reg.get(rec.id)


def test_tampered_record_is_refused_everywhere(reg):
    d = reg.put(b"data", kind="dataset", name="d")
    rec = reg.put(b"weights", kind="model", name="m", parents=[d.id])
    p = _rec(reg, rec.id)
    doc = json.loads(p.read_text())
    doc["parents"] = []  # rewrite lineage, keep valid JSON and the old signature
    p.write_text(json.dumps(doc))
    for call in (reg.record, reg.get, reg.lineage):
        with pytest.raises(IntegrityError, match="refused: signature .* does not match the content"):
            call(rec.id)
    with pytest.warns(UserWarning, match="left out of listing"):
        assert rec.id not in {r.id for r in reg.ls()}
    assert {r["id"]: r["ok"] for r in reg.verify_all()}[rec.id] is False
    with pytest.raises(IntegrityError):
        reg.put(b"child", kind="nir", name="n", parents=[rec.id])  # a refused record cannot be a parent


@pytest.mark.parametrize("damage, reason", [
    (lambda raw: raw[: len(raw) // 2], "not valid JSON"),
    (lambda raw: json.dumps({k: v for k, v in json.loads(raw).items() if k != "signature"}).encode(), "unsigned"),
    (lambda raw: json.dumps(json.loads(raw) | {"signature": {"alg": "ed25519", "key": "0" * 32, "sig": "AA=="}}).encode(),
     "not in the store's keyring"),
    (lambda raw: b"[]", "not a JSON object"),
])
def test_truncated_unsigned_or_forged_records_are_refused(reg, damage, reason):
    rec = reg.put(b"weights", kind="model", name="m")
    p = _rec(reg, rec.id)
    p.write_bytes(damage(p.read_bytes()))
    with pytest.raises(IntegrityError, match=reason):
        reg.get(rec.id)


def test_record_resigned_by_an_attacker_key_is_refused_when_signers_are_pinned(reg, store_dir, tmp_path):
    rec = reg.put(b"weights", kind="model", name="m")
    evil = Registry(store_dir, signing_key=tmp_path / "evil.pem")  # adds its key to the store's keyring
    p = _rec(reg, rec.id)
    doc = json.loads(p.read_text())
    doc.pop("signature")
    doc["name"] = "swapped"
    doc["signature"] = evil.signer.sign("record", doc)
    p.write_text(json.dumps(doc))
    pinned = Registry(store_dir, trusted_keys=[reg.signer.key_id])
    with pytest.raises(IntegrityError, match="not a trusted key"):
        pinned.get(rec.id)
    # a key in the store's keyring is not trusted by being there: the trust list does not name it
    with pytest.raises(IntegrityError, match=f"signed by key {evil.signer.key_id}, which is not in the trust list"):
        Registry(store_dir).record(rec.id)


def test_streamed_put_matches_bytes_put(reg):
    blob = np.random.default_rng(1).bytes(3 << 20)
    a = reg.put(io.BytesIO(blob), kind="model", name="file")
    b = reg.put((blob[i:i + 100_000] for i in range(0, len(blob), 100_000)), kind="model", name="chunks")
    assert a.id == b.id and a.size == len(blob) and reg.get(a.id) == blob
    assert reg.store.stale_temporaries() == []


def test_stage_cache_entries_are_signed(reg):
    a = reg.put(b"a", kind="dataset", name="a")
    b = reg.put(b"b", kind="dataset", name="b")
    reg.cache_put("k" * 64, a.id)
    assert reg.cache_get("k" * 64) == a.id and reg.cache_get("n" * 64) is None
    p = Path(reg.store.path(reg._k("cache/" + "k" * 64)))
    doc = json.loads(p.read_text())
    doc["id"] = b.id  # point the cache at another (valid) artifact
    p.write_text(json.dumps(doc))
    with pytest.warns(UserWarning, match="ignoring stage-cache entry"):
        assert reg.cache_get("k" * 64) is None
    with pytest.raises(ValueError, match="cache key"):
        reg.cache_get("../records/x")


# -- keys ----------------------------------------------------------------------------------------
def test_signing_key_generated_once_outside_the_store_and_not_for_reads(store_dir, tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("FABRIC_HOME", str(home))
    r = Registry(store_dir)
    r.ls()
    assert not (Path(store_dir) / "keys").exists(), "reading must not create a key"
    assert not home.exists(), "reading must not create a key"
    r.put(b"x", kind="dataset", name="x")
    pem = home / "keys" / "signing-ed25519.pem"
    assert pem.exists() and (pem.stat().st_mode & 0o777) == 0o600
    assert (Path(store_dir) / "keys" / f"{r.signer.key_id}.pub").exists()
    assert not list(Path(store_dir).rglob("*.pem")), "no private key inside the store"
    assert Registry(store_dir).signer.key_id == r.signer.key_id


def test_fabric_signing_key_env_is_used(store_dir, tmp_path, monkeypatch):
    key = tmp_path / "k" / "mine.pem"
    monkeypatch.setenv("FABRIC_SIGNING_KEY", str(key))
    rec = Registry(store_dir).put(b"x", kind="dataset", name="x")
    assert key.exists() and rec.signature["key"] == Signer.load_or_create(key).key_id
    bad = tmp_path / "bad.pem"
    bad.write_text("not a key")
    with pytest.raises(SignatureError, match="bad.pem: not an unencrypted PEM private key"):
        Signer.load_or_create(bad)


def test_registry_pickles_without_its_private_key(reg):
    reg.put(b"x", kind="dataset", name="x")
    clone = pickle.loads(pickle.dumps(reg))
    assert clone._signer is None
    assert clone.get(clone.put(b"y", kind="dataset", name="y").id) == b"y"


# -- tenants -------------------------------------------------------------------------------------
def test_tenant_b_cannot_list_or_read_tenant_a(store_dir):
    a, b, default = Registry(store_dir, tenant="a"), Registry(store_dir, tenant="b"), Registry(store_dir)
    rec = a.put(b"secret", kind="model", name="a-model")
    assert a.get(rec.id) == b"secret" and [r.id for r in a.ls("model")] == [rec.id]
    for other in (b, default):
        assert other.ls("model") == []
        for call in (other.get, other.record, other.verify, other.lineage):
            with pytest.raises(ArtifactNotFound):
                call(rec.id)
        with pytest.raises(ArtifactNotFound):
            other.get(rec.id[:10])
        with pytest.raises(ArtifactNotFound):
            other.put(b"child", kind="nir", name="n", parents=[rec.id])
    # same bytes in B are B's own artifact; A's record copied into B's namespace is refused
    Path(b.store.path(b._rkey(rec.id))).parent.mkdir(parents=True, exist_ok=True)
    Path(b.store.path(b._rkey(rec.id))).write_bytes(Path(a.store.path(a._rkey(rec.id))).read_bytes())
    Path(b.store.path(b._okey(rec.id))).parent.mkdir(parents=True, exist_ok=True)
    Path(b.store.path(b._okey(rec.id))).write_bytes(b"secret")
    with pytest.raises(IntegrityError, match="belongs to tenant 'a', not 'b'"):
        b.get(rec.id)
    with pytest.raises(ValueError, match="tenant '../a' is invalid"):
        Registry(store_dir, tenant="../a")


# -- crashes and concurrency ---------------------------------------------------------------------
_KILLED_WRITER = """
import sys, time
from fabric.store.registry import Registry
reg = Registry(sys.argv[1])
reg.put(b"small", kind="dataset", name="before")
def chunks():
    for i in range(32):
        yield bytes([i]) * (1 << 20)
        if i == 8:
            print("MID", flush=True)
            time.sleep(120)
reg.put(chunks(), kind="model", name="big")
print("DONE", flush=True)
"""


def test_writer_killed_mid_write_leaves_no_partial_artifact(store_dir):
    proc = _child(_KILLED_WRITER, store_dir)
    try:
        assert proc.stdout.readline().strip() == "MID", proc.stderr.read()
        reg = Registry(store_dir)
        assert reg.store.stale_temporaries("objects"), "the large artifact is being written"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    assert sorted(r.name for r in reg.ls()) == ["before", "environment"]
    assert all(v["ok"] for v in reg.verify_all())
    objects = [k for k in reg.store.list("objects")]
    assert len(objects) == 2, f"only complete objects under real names, got {objects}"
    # the partial file is invisible and a rerun of the writer completes
    big = b"".join(bytes([i]) * (1 << 20) for i in range(32))
    rec = reg.put(big, kind="model", name="big")
    assert reg.get(rec.id) == big


_BYTES_WRITER = """
import sys, os
from fabric.store.registry import Registry
reg = Registry(sys.argv[1])
i = 0
while True:
    rec = reg.put(os.urandom(8 << 20), kind="model", name=f"m{i}")
    print(rec.id, flush=True)
    i += 1
"""


def test_writer_killed_at_an_arbitrary_moment_leaves_only_valid_artifacts(store_dir):
    proc = _child(_BYTES_WRITER, store_dir)
    try:
        proc.stdout.readline()
        time.sleep(0.15)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    results = Registry(store_dir).verify_all()
    assert len(results) >= 2 and all(v["ok"] for v in results), results


_CONCURRENT_WRITER = """
import json, sys, time
from fabric.store.registry import Registry, sbom
sbom()
reg = Registry(sys.argv[1])
w = int(sys.argv[2])
while time.time() < float(sys.argv[3]):  # start together: the signing key does not exist yet
    pass
ids = []
shared = reg.put(b"shared-root", kind="dataset", name="root")
ids.append(shared.id)
parent = shared.id
for i in range(6):
    rec = reg.put(f"shared-{i}".encode() * 1000, kind="encoding", name=f"s{i}", parents=[parent])
    ids.append(rec.id)
    parent = rec.id
    own = reg.put(f"writer-{w}-{i}".encode() * (1 << 12), kind="model", name=f"w{w}-{i}", parents=[rec.id])
    ids.append(own.id)
    reg.cache_put(f"stage-{i}", rec.id)
print(json.dumps(ids), flush=True)
"""


def test_eight_concurrent_writer_processes_leave_all_artifacts_valid(store_dir):
    start = str(time.time() + 2.0)
    procs = [_child(_CONCURRENT_WRITER, store_dir, str(w), start) for w in range(8)]
    written: set[str] = set()
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        written |= set(json.loads(out.strip().splitlines()[-1]))
    reg = Registry(store_dir)
    results = reg.verify_all()
    assert all(v["ok"] for v in results), [v for v in results if not v["ok"]]
    assert written <= {v["id"] for v in results}
    assert len(written) == 1 + 6 + 8 * 6
    keys = sorted(p.name for p in (Path(store_dir) / "keys").iterdir())
    assert len(keys) == 1 and {r.signature["key"] for r in reg.ls()} == {keys[0].removesuffix(".pub")}, keys
    assert all(reg.cache_get(f"stage-{i}") for i in range(6))


# -- CLI -----------------------------------------------------------------------------------------
def test_cli_registry_tenant_verify_and_refusals(store_dir, capsys):
    a = Registry(store_dir, tenant="lab-a")
    rec = a.put(b"weights", kind="model", name="m")
    assert main(["registry", "ls", "--store", store_dir, "--tenant", "lab-a"]) == 0
    assert rec.id[:12] in capsys.readouterr().out
    assert main(["registry", "show", rec.id[:10], "--store", store_dir, "--tenant", "lab-b"]) == 4
    assert "no artifact" in capsys.readouterr().err
    assert main(["registry", "verify-all", "--store", store_dir, "--tenant", "lab-a"]) == 0
    assert "2/2 artifacts verified" in capsys.readouterr().out
    p = _obj(a, rec.id)
    p.write_bytes(b"Weights")
    assert main(["registry", "verify", rec.id[:10], "--store", store_dir, "--tenant", "lab-a"]) == 4
    assert "FAILED" in capsys.readouterr().out
    assert main(["registry", "cat", rec.id[:10], "--store", store_dir, "--tenant", "lab-a"]) == 4
    assert "corrupt" in capsys.readouterr().err
    r = _rec(a, rec.id)
    # a tenant's records are encrypted at rest: edit the plaintext as a holder of lab-a's credential (but
    # of no trusted signing key) could, and seal it again; the signature still catches the edit
    c = a._access()
    r.write_bytes(c.seal("record", c.open("record", r.read_bytes(), "record").replace(b'"name": "m"', b'"name": "n"')))
    assert main(["registry", "ls", "--store", store_dir, "--tenant", "lab-a"]) == 4
    out = capsys.readouterr()
    assert "1 refused" in out.out and "signature" in out.err
    assert main(["registry", "ls", "--store", store_dir, "--tenant", "Bad/Name"]) == 2
