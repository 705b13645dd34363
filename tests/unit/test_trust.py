"""Explicit trust: keys live outside the store, an admin-signed trust list names who may sign, and
`fabric keys` trusts, revokes and rotates. Every test gets its own FABRIC_HOME (a fresh admin)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from fabric.cli.main import main
from fabric.store.registry import IntegrityError, Registry
from fabric.store.signing import STORE_TRUST_KEY, SignatureError, Signer, TrustList, trust_path


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    h = tmp_path / "home"
    monkeypatch.setenv("FABRIC_HOME", str(h))
    for var in ("FABRIC_SIGNING_KEY", "FABRIC_TRUST", "FABRIC_TRUST_ADMIN", "FABRIC_TRUSTED_KEYS", "FABRIC_TENANT"):
        monkeypatch.delenv(var, raising=False)
    return h


@pytest.fixture
def reg(home, store_dir) -> Registry:
    return Registry(store_dir)


def _rec_path(reg: Registry, aid: str) -> Path:
    return Path(reg.store.path(reg._rkey(aid)))


def _resign(reg: Registry, aid: str, signer: Signer, **changes) -> None:
    p = _rec_path(reg, aid)
    doc = json.loads(p.read_text())
    doc.pop("signature")
    doc.update(changes)
    doc["signature"] = signer.sign("record", doc)
    p.write_text(json.dumps(doc))


def _worker(tmp_path: Path, name: str = "worker") -> tuple[Path, Path]:
    """A second host's key (its own path) and its exported public key file."""
    key = tmp_path / name / "signing-ed25519.pem"
    pub = tmp_path / f"{name}.pub"
    pub.write_bytes(Signer.load_or_create(key).public_pem())
    return key, pub


def test_first_key_becomes_admin_and_lives_outside_the_store(reg, home, store_dir):
    rec = reg.put(b"w", kind="model", name="m")
    tl = TrustList.read(trust_path())
    assert tl is not None and tl.admin == reg.signer.key_id and tl.trusted == {reg.signer.key_id}
    assert (home / "keys" / "signing-ed25519.pem").exists() and (home / "trust.json").exists()
    assert not list(Path(store_dir).rglob("*.pem")) and not (Path(store_dir) / "trust.json").exists()
    assert Registry(store_dir).record(rec.id).name == "m"


def test_record_forged_with_a_key_dropped_into_the_store_is_refused(reg, store_dir):
    rec = reg.put(b"weights", kind="model", name="m")
    reg.cache_put("stage", rec.id)
    evil = Signer.generate()
    # the attacker can write the store: drop a public key into keys/ and re-sign a record and the cache
    Path(store_dir, "keys", f"{evil.key_id}.pub").write_bytes(evil.public_pem())
    _resign(reg, rec.id, evil, name="swapped")
    cache = Path(reg.store.path(reg._k("cache/stage")))
    body = {"key": "stage", "id": rec.id, "tenant": "default"}
    cache.write_text(json.dumps(body | {"signature": evil.sign("cache", body)}))
    fresh = Registry(store_dir)
    for r in (reg, fresh):
        with pytest.raises(IntegrityError, match=f"signed by key {evil.key_id}, which is not in the trust list"):
            r.record(rec.id)
        v = r.verify(rec.id)
        assert not v["ok"] and evil.key_id in v["reason"]
        with pytest.warns(UserWarning, match=f"ignoring stage-cache entry.*{evil.key_id}"):
            assert r.cache_get("stage") is None
    # nor is the forgery silently re-signed by the next writer of the same bytes
    with pytest.raises(IntegrityError, match="not replacing it"):
        fresh.put(b"weights", kind="model", name="m")


def test_key_inside_the_store_is_refused(home, store_dir):
    r = Registry(store_dir, signing_key=Path(store_dir) / "keys" / "mine.pem")
    with pytest.raises(SignatureError, match="is inside the store"):
        r.put(b"x", kind="dataset", name="x")
    assert not list(Path(store_dir).rglob("*.pem"))


def test_trusted_worker_then_revoked_key_records_are_refused(reg, store_dir, tmp_path, capsys):
    reg.put(b"head", kind="dataset", name="d")
    key, pub = _worker(tmp_path)
    worker = Registry(store_dir, signing_key=key)
    wid = Signer.load(key).key_id
    with pytest.warns(UserWarning, match=f"signing key {wid} is not in the trust list"):
        assert worker.signer.key_id == wid
    assert main(["keys", "trust", str(pub), "--store", store_dir]) == 0
    assert f"trusted key {wid}" in capsys.readouterr().out
    rec = worker.put(b"from the worker", kind="model", name="w")
    assert reg.record(rec.id).signature["key"] == wid and reg.get(rec.id) == b"from the worker"
    assert main(["keys", "revoke", wid]) == 0
    assert "revoked key" in capsys.readouterr().out
    with pytest.raises(IntegrityError, match=f"signed by key {wid}, which is revoked"):
        reg.record(rec.id)
    assert not reg.verify(rec.id)["ok"]
    with pytest.raises(SignatureError, match=f"signing key {wid} .* is revoked"):
        Registry(store_dir, signing_key=key).put(b"more", kind="model", name="w2")
    assert main(["keys", "trust", wid]) == 2
    assert "revocation is final" in capsys.readouterr().err


def test_rotated_key_keeps_signing_and_old_records_stay_valid_until_revoked(reg, store_dir, capsys):
    old_rec = reg.put(b"before", kind="model", name="old")
    old_id = reg.signer.key_id
    assert main(["keys", "rotate", "--store", store_dir]) == 0
    out = capsys.readouterr().out
    r2 = Registry(store_dir)
    new_id = r2.signer.key_id
    assert new_id != old_id and f"new signing key {new_id}" in out and f"old key {old_id} retired" in out
    new_rec = r2.put(b"after", kind="model", name="new")
    assert new_rec.signature["key"] == new_id and r2.get(new_rec.id) == b"after"
    assert r2.record(old_rec.id).name == "old", "a retired key's records stay valid"
    tl = TrustList.read(trust_path())
    assert tl.admin == new_id and old_id in tl.retired and new_id in tl.trusted
    assert main(["keys", "rotate"]) == 0  # and again: the new admin can rotate too
    capsys.readouterr()
    assert main(["keys", "revoke", old_id]) == 0
    with pytest.raises(IntegrityError, match=f"key {old_id}, which is revoked"):
        Registry(store_dir).record(old_rec.id)
    assert Registry(store_dir).get(new_rec.id) == b"after"


def test_trust_list_tampering_is_detected(reg, store_dir, capsys, monkeypatch):
    rec = reg.put(b"w", kind="model", name="m")
    path = trust_path()
    doc = json.loads(path.read_text())
    evil = Signer.generate()
    doc["trusted"].append(evil.key_id)  # edited without the admin key
    path.write_text(json.dumps(doc))
    with pytest.raises(IntegrityError, match="trust list .* refused: bad admin signature"):
        Registry(store_dir).record(rec.id)
    assert main(["keys", "show"]) == 3
    assert "bad admin signature" in capsys.readouterr().err
    # a whole list re-signed by another "admin" is refused where the admin is pinned
    forged = TrustList.new(evil)
    path.write_bytes(forged.signed_bytes(evil))
    monkeypatch.setenv("FABRIC_TRUST_ADMIN", reg.signer.key_id)
    with pytest.raises(IntegrityError, match=f"signed for admin {evil.key_id}, but the pinned admin is"):
        Registry(store_dir).record(rec.id)


def test_published_trust_list_serves_workers_that_pin_the_admin(reg, store_dir, tmp_path, monkeypatch, capsys):
    rec = reg.put(b"w", kind="model", name="m")
    admin = reg.signer.key_id
    assert main(["keys", "publish", "--store", store_dir]) == 0
    assert f"FABRIC_TRUST_ADMIN={admin}" in capsys.readouterr().out
    monkeypatch.setenv("FABRIC_HOME", str(tmp_path / "worker-home"))  # another host: no local list
    with pytest.raises(IntegrityError, match="no trust list"):
        Registry(store_dir).record(rec.id)
    monkeypatch.setenv("FABRIC_TRUST_ADMIN", admin)
    assert Registry(store_dir).record(rec.id).name == "m"
    p = Path(store_dir, STORE_TRUST_KEY)
    p.write_text(p.read_text().replace('"serial": 1', '"serial": 9'))
    with pytest.raises(IntegrityError, match="bad admin signature"):
        Registry(store_dir).record(rec.id)


def test_fabric_trusted_keys_is_an_extra_pin(reg, store_dir, tmp_path, monkeypatch):
    rec = reg.put(b"w", kind="model", name="m")
    monkeypatch.setenv("FABRIC_TRUSTED_KEYS", "0" * 32)
    with pytest.raises(IntegrityError, match=f"key {reg.signer.key_id}, which is not a trusted key"):
        Registry(store_dir).record(rec.id)
    monkeypatch.setenv("FABRIC_TRUSTED_KEYS", reg.signer.key_id)
    assert Registry(store_dir).record(rec.id).name == "m"


def test_replacing_an_invalid_record_is_an_explicit_admin_action(reg, store_dir, tmp_path, caplog):
    rec = reg.put(b"w", kind="model", name="m")
    p = _rec_path(reg, rec.id)
    p.write_text(p.read_text().replace('"name": "m"', '"name": "x"'))
    with pytest.raises(IntegrityError, match="refused: signature .* does not match.*not replacing it"):
        reg.put(b"w", kind="model", name="m")
    key, _ = _worker(tmp_path)
    with pytest.warns(UserWarning, match="not in the trust list"):
        other = Registry(store_dir, signing_key=key)
        assert other.signer.key_id
    with pytest.raises(IntegrityError, match="replace_invalid needs the trust list's admin key"):
        other.put(b"w", kind="model", name="m", replace_invalid=True)
    with caplog.at_level(logging.WARNING, logger="fabric.store.registry"):
        fixed = reg.put(b"w", kind="model", name="m", replace_invalid=True)
    assert "re-signs a record that failed verification" in caplog.text
    assert fixed.name == "m" and reg.record(rec.id).name == "m"


def test_cli_keys_show_trust_revoke_errors_and_exit_codes(reg, store_dir, tmp_path, capsys, monkeypatch):
    assert main(["keys", "show"]) == 0
    out = capsys.readouterr().out
    assert "none yet" in out and "none at" in out, "show creates nothing"
    reg.put(b"w", kind="model", name="m")
    me = reg.signer.key_id
    key, pub = _worker(tmp_path)
    Registry(store_dir, signing_key=key).keyring.register(Signer.load(key))  # a key dropped into the store
    wid = Signer.load(key).key_id
    assert main(["keys", "show", "--store", store_dir, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["key_id"] == me and doc["admin"] == me and doc["trusted"] == [me]
    assert doc["store_keys"] == {me: "admin", wid: "untrusted"}
    assert main(["keys", "show"]) == 0
    assert f"admin:           {me}  (this host)" in capsys.readouterr().out
    for argv, msg in ((["keys", "trust", "xyz"], "neither a key id"),
                      (["keys", "trust", str(tmp_path / "missing.pub")], "neither a key id"),
                      (["keys", "revoke", me], "is the admin key"),
                      (["keys", "trust", wid, "--store", store_dir], "give PUBFILE")):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and msg in err, err
    bad = tmp_path / "bad.pub"
    bad.write_text("not a key")
    assert main(["keys", "trust", str(bad)]) == 2
    assert "not a PEM public key" in capsys.readouterr().err
    assert main(["keys", "trust", wid]) == 0 and main(["keys", "trust", wid]) == 0
    assert "already trusted" in capsys.readouterr().out
    assert main(["keys", "export-public", "--out", str(tmp_path / "me.pub")]) == 0
    assert me in capsys.readouterr().out
    # a host whose key is not the admin cannot change the list
    monkeypatch.setenv("FABRIC_SIGNING_KEY", str(key))
    assert main(["keys", "revoke", "1" * 32]) == 3
    assert f"this host's key {wid} is not the trust list's admin ({me})" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["keys", "--help"])
    assert exc.value.code == 0
    assert "rotate" in capsys.readouterr().out


def test_cli_turns_a_refused_record_into_one_line_exit_4(monkeypatch, capsys):
    """A store whose records the trust list refuses (e.g. written before keys left stores) ends any
    command with one line naming the key id, not a traceback."""
    import importlib

    cli = importlib.import_module("fabric.cli.main")

    def refused(_a):
        raise cli_integrity("record of artifact abc refused: signed by key 28db, which is not in the trust list\nmore")

    from fabric.store.registry import IntegrityError as cli_integrity

    monkeypatch.setitem(cli.COMMANDS, "devices", refused)
    assert cli.main(["devices"]) == 4
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["fabric: error: record of artifact abc refused: signed by key 28db, which is not in the trust list"]
