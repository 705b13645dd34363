"""Shared CLI options and the one error exit (fabric/cli/options.py), used by every room's parser."""

from __future__ import annotations

import argparse
import ast
from pathlib import Path

from fabric.cli.main import build_parser
from fabric.cli.options import fail

ROOT = Path(__file__).resolve().parents[2]


def test_fail_prints_one_line_and_returns_the_callers_code(capsys):
    assert fail("bad input", 2) == 2
    assert fail(ValueError("first\n  second\n"), 4) == 4
    err = capsys.readouterr().err.splitlines()
    assert err == ["fabric: error: bad input", "fabric: error: first; second"]


def _parsers(p: argparse.ArgumentParser, name: str = "fabric") -> list[tuple[str, argparse.ArgumentParser]]:
    out = [(name, p)]
    for a in p._actions:
        if isinstance(a, argparse._SubParsersAction):
            for k, sp in a.choices.items():
                out += _parsers(sp, f"{name} {k}")
    return out


def test_store_tenant_address_are_the_same_option_everywhere():
    seen = {"--store": 0, "--tenant": 0, "--address": 0}
    for name, p in _parsers(build_parser()):
        for a in p._actions:
            flag = next((f for f in a.option_strings if f in seen), None)
            if flag is None:
                continue
            seen[flag] += 1
            assert a.default is None and a.nargs is None and a.type is None, (name, flag)
            if flag == "--store":
                assert a.metavar == "URL" and "$FABRIC_STORE" in a.help, name
            if flag == "--tenant":
                assert "$FABRIC_TENANT" in a.help, name
    assert min(seen.values()) >= 3, seen  # core, tune, serve, dashboard and drift all take them


def test_no_room_defines_its_own_error_exit():
    own = []
    for room in ("fabric", "tune", "serve", "apps"):
        for path in (ROOT / room).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.FunctionDef) and node.name in ("_fail", "fail") and path.name != "options.py":
                    own.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}")
    assert own == []
