"""Tenant isolation: a non-default tenant opens only with the credential the admin issued, its data is
encrypted at rest, and the quota policy can be admin-signed (a forged one fails closed). No Ray; every
test gets its own FABRIC_HOME (a fresh admin)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from actors.cluster import BoardScheduler, PolicyError, PolicyFile, Quota, QuotaRefused, load_policy
from actors.cluster.policy import POLICY_PURPOSE, POLICY_SIGNED_ENV
from fabric.cli import keys as keys_cli
from fabric.cli.main import main
from fabric.store.registry import ArtifactNotFound, IntegrityError, Registry, TenantError
from fabric.store.signing import Signer, TrustList, trust_path
from fabric.store.tenants import ENV_TENANT_KEY, TenantCredential, credential_path, tenant_doc_key

SECRET = b"secret-weights-of-tenant-a" * 50


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    h = tmp_path / "home"
    monkeypatch.setenv("FABRIC_HOME", str(h))
    for var in ("FABRIC_SIGNING_KEY", "FABRIC_TRUST", "FABRIC_TRUST_ADMIN", "FABRIC_TRUSTED_KEYS", "FABRIC_TENANT",
                ENV_TENANT_KEY, POLICY_SIGNED_ENV):
        monkeypatch.delenv(var, raising=False)
    return h


@pytest.fixture
def issued(home, store_dir, tmp_path, capsys) -> dict[str, Path]:
    """The admin issues tenants a and b, each credential to a file handed over (none kept in FABRIC_HOME)."""
    out = {}  # on a fresh store: the first key used here becomes the admin
    for t in ("a", "b"):
        out[t] = tmp_path / f"{t}.key"
        assert main(["tenants", "create", t, "--store", store_dir, "--out", str(out[t])]) == 0
        msg = capsys.readouterr().out
        assert str(out[t]) in msg and out[t].read_text().strip() not in msg  # the secret is never printed
        assert oct(out[t].stat().st_mode & 0o777) == "0o600"
    assert not credential_path("a").exists()
    return out


def _as(monkeypatch, key: Path | str | None) -> None:
    if key is None:
        monkeypatch.delenv(ENV_TENANT_KEY, raising=False)
    else:
        monkeypatch.setenv(ENV_TENANT_KEY, str(key))


def _files(store_dir: str, under: str = "") -> list[Path]:
    return [p for p in Path(store_dir, under).rglob("*") if p.is_file()]


def test_tenant_b_cannot_read_list_or_verify_tenant_a(issued, store_dir, monkeypatch, capsys):
    _as(monkeypatch, issued["a"])
    a = Registry(store_dir, tenant="a")
    rec = a.put(SECRET, kind="model", name="a-model")
    a.cache_put("stage-a", rec.id)
    assert a.get(rec.id) == SECRET and [r.id for r in a.ls("model")] == [rec.id]
    assert all(v["ok"] for v in a.verify_all()) and a.cache_get("stage-a") == rec.id

    _as(monkeypatch, issued["b"])  # tenant B, holding only its own credential
    b_own = Registry(store_dir, tenant="b")
    assert b_own.ls() == [] and b_own.verify_all() == [] and b_own.cache_get("stage-a") is None
    with pytest.raises(ArtifactNotFound):
        b_own.get(rec.id)
    as_a = Registry(store_dir, tenant="a")
    for call in (as_a.ls, as_a.verify_all, lambda: as_a.get(rec.id), lambda: as_a.record(rec.id[:10]),
                 lambda: as_a.verify(rec.id), lambda: as_a.lineage(rec.id), lambda: as_a.cache_get("stage-a"),
                 lambda: as_a.put(b"x", kind="model", name="intruder")):
        with pytest.raises(TenantError) as e:
            call()
        msg = str(e.value)
        assert "tenant 'a'" in msg and "needs its credential" in msg and ENV_TENANT_KEY in msg, msg
        assert str(credential_path("a")) in msg and "\n" not in msg
    for argv in (["registry", "ls"], ["registry", "show", rec.id[:10]], ["registry", "verify-all"],
                 ["registry", "cat", rec.id[:10]], ["registry", "lineage", rec.id[:10]]):
        assert main([*argv, "--store", store_dir, "--tenant", "a"]) == 4, argv
        out = capsys.readouterr()
        assert rec.id[:10] not in out.out and "a-model" not in out.out
        assert out.err.count("\n") == 1 and "tenant 'a'" in out.err and ENV_TENANT_KEY in out.err, out.err
    assert list(Path(store_dir, "tenants", "a").rglob("*.key")) == []  # nothing was issued on the way


def test_raw_store_bytes_are_not_the_plaintext_but_the_default_tenant_is_unchanged(issued, store_dir, monkeypatch):
    _as(monkeypatch, issued["a"])
    a = Registry(store_dir, tenant="a")
    rec = a.put(SECRET, kind="model", name="a-model", extra={"note": "confidential-note"})
    a.cache_put("stage-a", rec.id)
    blobs = [p.read_bytes() for p in _files(store_dir, "tenants/a")]
    assert len(blobs) >= 4  # object, record, sbom object + record, cache entry, tenant entry
    for blob in blobs:
        assert SECRET[:26] not in blob and b"a-model" not in blob and b"confidential-note" not in blob
        assert rec.id.encode() not in blob or blob.startswith(b"{")  # only the signed tenant entry is plaintext
    assert Path(store_dir, tenant_doc_key("a")).read_bytes().startswith(b"{")
    # the default tenant: plaintext bytes and JSON records, exactly as before
    d = Registry(store_dir).put(b"plain default bytes", kind="dataset", name="d")
    assert Path(store_dir, "objects", d.id[:2], d.id).read_bytes() == b"plain default bytes"
    assert json.loads(Path(store_dir, "records", f"{d.id}.json").read_text())["name"] == "d"


def test_wrong_malformed_and_revoked_credentials_are_refused_in_one_line(issued, store_dir, tmp_path, monkeypatch,
                                                                         capsys):
    _as(monkeypatch, issued["a"])
    rec = Registry(store_dir, tenant="a").put(SECRET, kind="model", name="m")
    wrong = tmp_path / "wrong.key"
    TenantCredential.generate("a").save(wrong)  # a well-formed credential for "a", but not the issued one
    for key, pattern in ((wrong, r"tenant 'a' .*: the credential from .*wrong.key.* is not the one issued for it"),
                         ("fabric-tenant-v1.a.short", r"tenant credential from \$FABRIC_TENANT_KEY is malformed"),
                         (tmp_path / "missing.key", r"tenant credential file .*missing.key .* cannot be read")):
        _as(monkeypatch, key)
        with pytest.raises(TenantError, match=pattern) as e:
            Registry(store_dir, tenant="a").get(rec.id)
        assert "\n" not in str(e.value)
    # a credential given explicitly for another tenant
    with pytest.raises(TenantError, match=r"the given credential is for tenant 'b', not 'a'"):
        Registry(store_dir, tenant="a", tenant_key=issued["b"]).ls()
    assert Registry(store_dir, tenant="a", tenant_key=issued["a"]).get(rec.id) == SECRET
    # revocation: the admin revokes, the issued credential is refused from then on (API and CLI)
    _as(monkeypatch, None)
    assert main(["tenants", "revoke", "a", "--store", store_dir]) == 0
    assert "revoked tenant 'a'" in capsys.readouterr().out
    _as(monkeypatch, issued["a"])
    with pytest.raises(TenantError, match=r"tenant 'a' in .*: credential [0-9a-f]{32} is revoked by the admin"):
        Registry(store_dir, tenant="a").get(rec.id)
    assert main(["registry", "ls", "--store", store_dir, "--tenant", "a"]) == 4
    assert "is revoked" in capsys.readouterr().err
    assert main(["tenants", "create", "a", "--store", store_dir]) == 2  # no silent re-issue over encrypted data
    assert "is revoked" in capsys.readouterr().err
    assert main(["tenants", "ls", "--store", store_dir, "--json"]) == 0
    rows = {r["tenant"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["a"]["status"] == "revoked" and rows["b"]["status"] == "active"


def test_only_the_admin_issues_tenants(issued, store_dir, tmp_path, monkeypatch, capsys):
    admin = TrustList.read(trust_path()).admin
    monkeypatch.setenv("FABRIC_SIGNING_KEY", str(tmp_path / "worker" / "signing-ed25519.pem"))  # another key
    assert main(["tenants", "create", "c", "--store", store_dir]) == 3
    assert "is not the trust list's admin" in capsys.readouterr().err
    with pytest.warns(UserWarning, match="not in the trust list"):
        with pytest.raises(TenantError, match=r"tenant 'c' is not set up in .*: the admin issues its credential"):
            Registry(store_dir, tenant="c").put(b"x", kind="model", name="m")
    assert not Path(store_dir, tenant_doc_key("c")).exists()
    assert Registry(store_dir, tenant="c").ls() == []  # reading a tenant that holds nothing shows nothing
    assert main(["tenants", "revoke", "b", "--store", store_dir]) == 3
    assert admin in capsys.readouterr().err


def test_forged_or_deleted_tenant_entry_fails_closed(issued, store_dir, monkeypatch):
    _as(monkeypatch, issued["a"])
    rec = Registry(store_dir, tenant="a").put(SECRET, kind="model", name="m")
    doc_path = Path(store_dir, tenant_doc_key("a"))
    good = doc_path.read_bytes()
    # an attacker with store write access issues "a" to a credential of its own, signed by a key it drops in
    evil, mine = Signer.generate(), TenantCredential.generate("a")
    Path(store_dir, "keys", f"{evil.key_id}.pub").write_bytes(evil.public_pem())
    body = json.loads(good)
    body.pop("signature")
    body["credential"] = mine.credential_id
    body["signature"] = evil.sign("tenant", body)
    doc_path.write_text(json.dumps(body))
    _as(monkeypatch, mine.token())
    with pytest.raises(TenantError, match=rf"tenant entry .* refused: signed by key {evil.key_id}, which is not in"):
        Registry(store_dir, tenant="a").ls()
    # and with the real entry back, the attacker's credential cannot decrypt anything either
    doc_path.write_bytes(good)
    with pytest.raises(TenantError, match="is not the one issued"):
        Registry(store_dir, tenant="a").ls()
    doc_path.unlink()
    _as(monkeypatch, issued["a"])
    with pytest.raises(TenantError, match=r"tenant 'a' has artifacts in .* but no admin-signed entry"):
        Registry(store_dir, tenant="a").get(rec.id)


def test_encrypted_objects_stream_and_refuse_tampering_and_truncation(issued, store_dir, monkeypatch):
    _as(monkeypatch, issued["a"])
    a = Registry(store_dir, tenant="a")
    seg = 1 << 20
    for n in (0, seg - 1, seg, seg + 1):  # the segment boundary and one byte either side
        data = os.urandom(n)
        assert a.get(a.put(data, kind="model", name=f"m{n}").id) == data
    big = os.urandom(3 * seg + 5)
    rec = a.put((big[i:i + 70_000] for i in range(0, len(big), 70_000)), kind="model", name="big")
    assert rec.size == len(big) and a.get(rec.id) == big
    assert a.get(a.put(big, kind="model", name="big-again").id) == big  # same id from bytes and from chunks
    obj = Path(a.store.path(a._okey(rec.id)))
    sealed = obj.read_bytes()
    assert big[:64] not in sealed and len(sealed) > len(big)
    for bad in (sealed[:-(seg // 2)], sealed[: len(sealed) - (len(sealed) - 17) % (seg + 16)],
                sealed[:40] + bytes([sealed[40] ^ 1]) + sealed[41:]):
        obj.write_bytes(bad)
        with pytest.raises(IntegrityError, match=r"is corrupt: its encrypted bytes fail authentication"):
            Registry(store_dir, tenant="a").get(rec.id)
        assert not Registry(store_dir, tenant="a").verify(rec.id)["ok"]
    obj.write_bytes(sealed)
    assert Registry(store_dir, tenant="a").get(rec.id) == big


def test_first_write_on_the_admin_host_issues_the_tenant(home, store_dir, caplog):
    rec = Registry(store_dir, tenant="lab").put(b"w", kind="model", name="m")  # like `fabric tenants create lab`
    assert credential_path("lab").exists() and Path(store_dir, tenant_doc_key("lab")).exists()
    assert Registry(store_dir, tenant="lab").get(rec.id) == b"w"
    assert any("issued a credential for new tenant 'lab'" in r.getMessage() for r in caplog.records)


# -- the signed quota policy --------------------------------------------------------------------------
POLICY = "default: {max_concurrent: 2}\ntenants:\n  capped: {max_concurrent: 1}\n"


@pytest.fixture
def policy(home, tmp_path, capsys) -> Path:
    p = tmp_path / "policy.yaml"
    p.write_text(POLICY)
    assert main(["keys", "sign-policy", str(p)]) == 0  # the first key here is the admin
    assert "signed" in capsys.readouterr().out
    return p


def test_a_signed_policy_applies_and_a_caller_still_cannot_raise_its_quota(policy, monkeypatch, capsys):
    assert POLICY_PURPOSE == keys_cli.POLICY_PURPOSE
    monkeypatch.setenv(POLICY_SIGNED_ENV, "1")
    pol = PolicyFile(policy).current()
    assert pol.limits("capped").max_concurrent == 1
    s = BoardScheduler(policy=pol)
    with pytest.raises(QuotaRefused, match=r"tenant 'capped': quota.max_concurrent=2 is above the admin policy"):
        s.set_quota("capped", Quota(max_concurrent=2))
    assert s.quota("capped").max_concurrent == 1
    assert main(["keys", "verify-policy", str(policy)]) == 0
    assert "signature ok" in capsys.readouterr().out


def test_forged_changed_or_unsigned_policies_are_refused(policy, tmp_path, monkeypatch, capsys):
    sig = policy.with_name(policy.name + ".sig")
    good_sig = sig.read_bytes()
    # changed after signing (a tenant raises its own limit in the file)
    policy.write_text(POLICY.replace("max_concurrent: 1", "max_concurrent: 99"))
    with pytest.raises(PolicyError, match=r"quota policy .*policy.yaml: refused: its content does not match"):
        load_policy(policy)  # a .sig present is always checked
    assert main(["keys", "verify-policy", str(policy)]) == 3
    assert "does not match" in capsys.readouterr().err
    # re-signed by a key that is not the admin
    evil = Signer.generate()
    body = json.loads(good_sig)
    body.pop("signature")
    body["sha256"] = hashlib.sha256(policy.read_bytes()).hexdigest()
    body["signature"] = evil.sign("document", body)
    sig.write_text(json.dumps(body))
    with pytest.raises(PolicyError, match=rf"refused: signed by key {evil.key_id}, not by the trust list's admin"):
        load_policy(policy)
    # admin key id with a forged signature value
    body["signature"] = dict(evil.sign("document", body), key=TrustList.read(trust_path()).admin)
    sig.write_text(json.dumps(body))
    with pytest.raises(PolicyError, match=r"does not match the content"):
        load_policy(policy)
    # a signature for another purpose is not a policy signature
    sig.write_bytes(good_sig.replace(b'"quota-policy"', b'"other"'))
    with pytest.raises(PolicyError, match=r"signs a 'other' document, not a 'quota-policy'"):
        load_policy(policy)
    # unsigned: accepted as before unless the head node requires a signature, then refused (fail closed)
    sig.unlink()
    assert load_policy(policy).limits("capped").max_concurrent == 99
    monkeypatch.setenv(POLICY_SIGNED_ENV, "1")
    with pytest.raises(PolicyError, match=r"quota policy .*: refused: unsigned \(no policy.yaml.sig"):
        PolicyFile(policy).current()
    with pytest.raises(PolicyError) as e:
        load_policy(policy, require_signature=True)
    assert "\n" not in str(e.value)


def test_signing_a_policy_needs_the_admin_and_valid_yaml(policy, tmp_path, monkeypatch, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("tenants: {a: [}")
    assert main(["keys", "sign-policy", str(bad)]) == 2
    assert "not valid YAML/JSON" in capsys.readouterr().err and not bad.with_name("bad.yaml.sig").exists()
    monkeypatch.setenv("FABRIC_SIGNING_KEY", str(tmp_path / "worker" / "signing-ed25519.pem"))
    assert main(["keys", "sign-policy", str(policy)]) == 3
    assert "is not the trust list's admin" in capsys.readouterr().err
