"""Every device constant cites something a user can check (a paper, datasheet, URL or a file inside a named
package), never a file outside the repository; and the compile/evaluate/golden cache keys change when a
kind's constants or emulator code change (issue #16 items 8 and 9)."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from fabric import kinds as K
from tests.unit.test_house import TOY_CONSTANTS, toy_kind  # noqa: F401  (the toy kind fixture)

ROOT = Path(__file__).resolve().parents[2]
# shared files outside the repo, and the seed papers' file names (000_<hex>.txt, "003 §2")
FORBIDDEN = re.compile(r"shared/|devices\.md|design\.md|\b\d{3}_[0-9a-f]{8,}|\b\d{3}(?:\.txt)?\s*(?:paper\s*)?§")


def _strings(node: object) -> list[str]:
    if isinstance(node, dict):
        return [s for v in node.values() for s in _strings(v)]
    if isinstance(node, list):
        return [s for v in node for s in _strings(v)]
    return [node] if isinstance(node, str) else []


@pytest.mark.parametrize("kind", K.kinds())
def test_constants_file_cites_no_file_outside_the_repository(kind):
    path = ROOT / K.kind_package(kind).replace(".", "/") / "constants.yaml"
    text = path.read_text()
    bad = [line.strip() for line in text.splitlines() if FORBIDDEN.search(line)]
    assert not bad, f"{path.relative_to(ROOT)} cites files outside the repository: {bad}"
    for value in _strings(yaml.safe_load(text)):
        assert not FORBIDDEN.search(value), value


def test_the_pattern_catches_each_kind_of_outside_citation():
    for s in ("x (shared/devices.md)", "devices.md", "design.md §2", "000_bfc5cf8bafaf0328.txt use case",
              "003 §2", "(000 paper §III.6)"):
        assert FORBIDDEN.search(s), s
    for s in ("Davies et al. 2018, DOI 10.1109/MM.2018.112130359", "file sanafe/examples/loihi.yaml",
              "arXiv:2409.14918 §3"):
        assert not FORBIDDEN.search(s), s


def test_fabric_devices_json_cites_no_file_outside_the_repository():
    r = subprocess.run([sys.executable, "-m", "fabric.cli.main", "devices", "--json"], capture_output=True,
                       text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stderr
    bad = [s for s in _strings(json.loads(r.stdout)) if FORBIDDEN.search(s)]
    assert not bad, bad


def test_no_static_power_of_zero_without_a_source_saying_so():
    for kind in K.kinds():
        doc = yaml.safe_load((ROOT / K.kind_package(kind).replace(".", "/") / "constants.yaml").read_text())
        c = (doc.get("constants") or {}).get("p_static_w")
        if c is not None and c["value"] == 0:
            assert "states" in c["source"] or "DOI" in c["source"], (kind, c["source"])
    loihi = yaml.safe_load((ROOT / "actors/loihi/constants.yaml").read_text())["constants"]["p_static_w"]
    assert loihi["value"] > 0 and "DOI" in loihi["source"] and "low" in loihi["source"] and "high" in loihi["source"]


# -- item 9: cache keys -------------------------------------------------------------------------------
@pytest.mark.usefixtures("toy_kind")
def test_code_digest_changes_with_a_constant_and_with_the_emulator_code(tmp_path):
    K.code_digest.cache_clear()
    before = K.code_digest("toy")
    assert before == K.code_digest("toy") and len(before) == 64
    folder = tmp_path / "plugins" / "toykind"
    (folder / "constants.yaml").write_text(TOY_CONSTANTS.replace("1.0e-9", "2.0e-9"))
    K.code_digest.cache_clear()
    after_constant = K.code_digest("toy")
    assert after_constant != before
    (folder / "runtime.py").write_text((folder / "runtime.py").read_text() + "\n# emulator fix\n")
    K.code_digest.cache_clear()
    assert K.code_digest("toy") not in (before, after_constant)
    (folder / "notes.txt").write_text("not code")  # only .py and .yaml files count
    digest = K.code_digest("toy")
    K.code_digest.cache_clear()
    assert K.code_digest("toy") == digest
    K.code_digest.cache_clear()


def test_compile_evaluate_and_golden_keys_include_the_kind_code_digest():
    tree = ast.parse((ROOT / "fabric/flow/pipeline.py").read_text())
    found = {}
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "stage"
                and node.args and isinstance(node.args[0], ast.JoinedStr)):
            name = node.args[0].values[0].value if isinstance(node.args[0].values[0], ast.Constant) else ""
            stage = name.split("[")[0]
            key = node.args[1]
            found[stage] = any(isinstance(n, ast.Call) and getattr(n.func, "id", "") == "code_digest"
                               and isinstance(n.args[0], ast.Name) and n.args[0].id == "kind" for n in ast.walk(key))
    assert {s: found.get(s) for s in ("compile", "evaluate", "golden")} == dict.fromkeys(
        ("compile", "evaluate", "golden"), True)
