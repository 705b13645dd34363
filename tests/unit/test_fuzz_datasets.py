"""Fuzzing the dataset door (issue #18 items 5 and 6): valid files of every ingest format (.npz, .npy +
labels, Parquet plain and in the fabric's own form, CSV, UEA/UCR .ts), mutated as a careless user or an
attacker would (truncated, bytes flipped or spliced, emptied, NaN/inf values, wrong label counts,
ragged rows, headers lying about the content), through ``fabric data ingest``. Every case either
stores a dataset whose values are all finite, or exits 2 with one ``fabric: error:`` line naming the
file - never a traceback, never another exit code - and a refused file stores nothing.
``--fuzz-long``: 10x."""

from __future__ import annotations

import contextlib
import io
import random
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fabric.cli.main import main
from fabric.data.datasets import Dataset, from_parquet_bytes, to_parquet_bytes
from fabric.store.registry import Registry

CASES = 600  # CI count (x10 with --fuzz-long); ~50 ms a case here


def _arrays(rng: random.Random) -> tuple[np.ndarray, np.ndarray]:
    npr = np.random.default_rng(rng.randrange(1 << 30))
    n, c, t = rng.randint(6, 20), rng.randint(1, 3), rng.randint(4, 12)
    x = npr.normal(0, 1, (n, c, t)).astype(np.float32)
    y = np.arange(n) % rng.randint(2, 3)
    return x, y


def _valid(rng: random.Random, d: Path) -> tuple[Path, list[str]]:
    """A valid file (and extra CLI arguments it needs) of a random format."""
    x, y = _arrays(rng)
    fmt = rng.choice(["npz", "npy", "parquet", "fabric_parquet", "csv", "ts"])
    if fmt == "npz":
        p = d / "data.npz"
        np.savez(p, x=x, y=y)
        return p, []
    if fmt == "npy":
        p, lab = d / "data.npy", d / "labels.npy"
        np.save(p, x)
        np.save(lab, y)
        return p, ["--labels", str(lab)]
    if fmt in ("parquet", "csv"):
        flat = x.reshape(len(x), -1)
        df = pd.DataFrame(flat, columns=[f"f{i}" for i in range(flat.shape[1])])
        df["label"] = [f"c{v}" for v in y]
        p = d / f"data.{fmt}"
        df.to_parquet(p) if fmt == "parquet" else df.to_csv(p, index=False)
        return p, []
    if fmt == "fabric_parquet":
        ds = Dataset(name="fz", x=x, y=y.astype(np.int64), classes=[f"c{i}" for i in range(int(y.max()) + 1)],
                     sampling_rate_hz=100.0, source="fuzz", channels=[])
        splits = np.array(["train"] * (len(x) - 2) + ["test"] * 2, dtype=object)
        p = d / "data.parquet"
        p.write_bytes(to_parquet_bytes(ds, splits))
        return p, []
    lines = ["@problemName fz", "@timeStamps false", "@univariate " + ("true" if x.shape[1] == 1 else "false"),
             f"@dimensions {x.shape[1]}", "@equalLength true", f"@seriesLength {x.shape[2]}",
             "@classLabel true c0 c1 c2", "@data"]
    for s, lab in zip(x, y, strict=True):
        lines.append(":".join(",".join(f"{v:.4f}" for v in ch) for ch in s) + f":c{lab}")
    p = d / "data_TRAIN.ts"
    p.write_text("\n".join(lines) + "\n")
    return p, []


# -- mutations: each edits the file in place and returns whether the result is certainly invalid ---------
def _truncate(rng: random.Random, p: Path) -> bool:
    b = p.read_bytes()
    p.write_bytes(b[: rng.randrange(0, max(1, len(b)))])
    return False  # a text file cut at a line end can still be valid


def _flip(rng: random.Random, p: Path) -> bool:
    b = bytearray(p.read_bytes())
    for _ in range(rng.randint(1, 8)):
        i = rng.randrange(len(b))
        b[i] ^= 1 << rng.randrange(8)
    p.write_bytes(bytes(b))
    return False


def _splice(rng: random.Random, p: Path) -> bool:
    b = p.read_bytes()
    i = rng.randrange(len(b) + 1)
    junk = rng.choice([b"\x00" * rng.randint(1, 64), bytes(rng.randrange(256) for _ in range(rng.randint(1, 64))),
                       b"NaN,inf,-inf\n", b"\xff\xfe", b"@data\n", b":::\n", "é\u2028".encode()])
    p.write_bytes(b[:i] + junk + b[i:])
    return False


def _empty(rng: random.Random, p: Path) -> bool:  # noqa: ARG001 - uniform mutator signature
    p.write_bytes(b"")
    return True


def _garbage(rng: random.Random, p: Path) -> bool:
    p.write_bytes(bytes(rng.randrange(256) for _ in range(rng.randint(1, 4096))))
    return False  # random bytes are almost never valid; the invariant (finite or refused) still holds


def _nonfinite(rng: random.Random, p: Path) -> bool:
    """Rewrite the content with a NaN or inf sample value (a .ts '?' is a missing value: also refused)."""
    bad = rng.choice([np.nan, np.inf, -np.inf])
    ext = p.suffix
    if ext == ".npz":
        with np.load(p) as z:
            x, y = z["x"].copy(), z["y"]
        x.flat[rng.randrange(x.size)] = bad
        np.savez(p, x=x, y=y)
    elif ext == ".npy":
        x = np.load(p)
        x.flat[rng.randrange(x.size)] = bad
        np.save(p, x)
    elif ext == ".parquet":
        try:
            ds, splits = from_parquet_bytes(p.read_bytes())
        except Exception:  # a plain Parquet file
            df = pd.read_parquet(p)
            df.iloc[rng.randrange(len(df)), 0] = bad
            df.to_parquet(p)
            return True
        ds.x.flat[rng.randrange(ds.x.size)] = bad
        p.write_bytes(to_parquet_bytes(ds, splits))
    elif ext == ".csv":
        df = pd.read_csv(p)
        df.iloc[rng.randrange(len(df)), 0] = bad
        df.to_csv(p, index=False)
    else:
        lines = p.read_text().splitlines()
        i = rng.randrange(lines.index("@data") + 1, len(lines))
        vals = lines[i].split(",")
        vals[0] = ("" if ":" not in vals[0] else vals[0].rsplit(":", 1)[0] + ":") + rng.choice(["NaN", "inf", "?"])
        lines[i] = ",".join(vals)
        p.write_text("\n".join(lines) + "\n")
    return True


def _labels(rng: random.Random, p: Path) -> bool:
    """Labels that do not match the samples: one too many or one too few."""
    ext = p.suffix
    extra = rng.choice([1, -1])
    if ext == ".npz":
        with np.load(p) as z:
            x, y = z["x"], z["y"]
        np.savez(p, x=x, y=np.resize(y, len(y) + extra))
        return True
    if ext == ".npy":
        lab = p.with_name("labels.npy")
        y = np.load(lab)
        np.save(lab, np.resize(y, len(y) + extra))
        return True
    if ext == ".ts":  # a sample without its label
        lines = p.read_text().splitlines()
        lines[-1] = lines[-1].rsplit(":", 1)[0]
        p.write_text("\n".join(lines) + "\n")
        return False  # the last channel is read as the label: may still parse, as a different problem
    return _ragged(rng, p)


def _ragged(rng: random.Random, p: Path) -> bool:
    """A row with a different length from the others."""
    if p.suffix in (".csv", ".ts"):
        lines = p.read_text().splitlines()
        start = lines.index("@data") + 1 if p.suffix == ".ts" else 1
        i = rng.randrange(start, len(lines))
        lines[i] = lines[i] + ",1.0,2.0" if rng.random() < 0.5 else lines[i].split(",", 1)[-1]
        p.write_text("\n".join(lines) + "\n")
        return p.suffix == ".ts"  # a CSV row that lost its first field may still have the column count
    return _flip(rng, p)


MUTATIONS: dict[str, Callable[[random.Random, Path], bool]] = {
    "truncate": _truncate, "flip": _flip, "splice": _splice, "empty": _empty, "garbage": _garbage,
    "nonfinite": _nonfinite, "labels": _labels, "ragged": _ragged,
}


def _ingest(store: Path, path: Path, extra: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main(["data", "ingest", str(path), "--store", str(store), *extra])
        except SystemExit as exc:  # argparse
            rc = int(exc.code or 0)
        except BaseException as exc:  # noqa: BLE001 - a raw exception reaching the user is the failure we look for
            return -1, out.getvalue(), f"{type(exc).__name__}: {exc}"
    return rc, out.getvalue(), err.getvalue()


def test_mutated_dataset_files_are_stored_finite_or_refused_in_one_line(fuzz, tmp_path: Path) -> None:
    rng = random.Random(18)
    store = tmp_path / "store"
    n = fuzz.n(CASES)
    failures: list[str] = []
    stored = refused = 0
    seen: set[str] = set()
    for i in range(n):
        d = tmp_path / f"c{i}"
        d.mkdir()
        path, extra = _valid(rng, d)
        name = rng.choice(list(MUTATIONS))
        seen.add(name)
        must_fail = MUTATIONS[name](rng, path)
        before = len(Registry(str(store)).ls("dataset"))
        rc, out, err = _ingest(store, path, extra)
        after = Registry(str(store)).ls("dataset")
        case = f"case {i} ({path.suffix} {name})"
        if rc == 0:
            stored += 1
            if must_fail:
                failures.append(f"{case}: an invalid file was stored")
            ds, _ = from_parquet_bytes(Registry(str(store)).get(after[0].id if len(after) == 1 else
                                                                   max(after, key=lambda r: r.created).id))
            if not np.isfinite(np.asarray(ds.x, dtype=np.float64)).all():
                failures.append(f"{case}: a stored dataset holds non-finite values")
        elif rc == 2:
            refused += 1
            lines = [ln for ln in err.strip().splitlines() if ln]
            if len(lines) != 1 or not lines[0].startswith("fabric: error:") or "Traceback" in err:
                failures.append(f"{case}: refusal is not one fabric line: {err[:300]!r}")
            if len(after) != before:
                failures.append(f"{case}: a refused file stored something")
        else:
            failures.append(f"{case}: exit {rc}: {err[:300]!r}")
    fuzz.record("datasets", n, len(failures))
    assert seen == set(MUTATIONS)
    assert refused > n // 3 and stored > 0, (stored, refused)  # the suite exercises both outcomes
    assert not failures, "\n".join(failures[:20]) + f"\n({len(failures)} of {n} cases)"


@pytest.mark.parametrize("name", sorted(MUTATIONS))
def test_each_mutation_changes_a_valid_file(name: str, tmp_path: Path) -> None:
    """A mutator that left files as they were would fuzz nothing."""
    rng = random.Random(7)
    changed = 0
    for i in range(12):
        d = tmp_path / f"{name}{i}"
        d.mkdir()
        path, _ = _valid(rng, d)
        before = {p.name: p.read_bytes() for p in d.iterdir()}
        MUTATIONS[name](rng, path)
        changed += before != {p.name: p.read_bytes() for p in d.iterdir()}
    assert changed >= 10


def test_findings_stay_fixed(tmp_path: Path) -> None:
    """What the suite found on its first run: a .ts label outside the declared @classLabel list was
    stored as a new class; values near float32's limit normalized to NaN and were stored."""
    from fabric.data.datasets import DataError, ingest, prepare

    ts = tmp_path / "m_TRAIN.ts"
    ts.write_text("@problemName m\n@timeStamps false\n@univariate true\n@classLabel true a b\n@data\n"
                  "1,2,3:a\n2,3,4:b\n3,4,5:c,1.0\n")
    with pytest.raises(DataError, match=r"m_TRAIN.ts:8: class label 'c,1.0' is not among the declared"):
        ingest(ts)
    ts.write_text(ts.read_text().replace("c,1.0", "b"))
    assert ingest(ts).classes == ["a", "b"]
    p = tmp_path / "big.npz"
    x = np.zeros((8, 4), np.float32)
    x[0, 0], x[1, 0] = -3.0e38, 3.0e38  # finite in float32, but hi - lo is not
    np.savez(p, x=x, y=np.arange(8) % 2)
    with pytest.raises(DataError, match="too wide to normalize in float32"):
        prepare(ingest(p), test_fraction=0.25)
    x[0, 0], x[1, 0] = -1.0e38, 1.0e38  # a span of 2e38 fits float32 (max 3.4e38): normalizes
    np.savez(p, x=x, y=np.arange(8) % 2)
    ds, _ = prepare(ingest(p), test_fraction=0.25, stratify=False)
    assert np.isfinite(ds.x).all()
