"""Fuzzing the spec door (issue #18 items 5 and 6): YAML specs generated from the pydantic schema, and
seeded mutations of examples/*.yaml (tree edits and raw-text edits). Every outcome is either a valid
Spec with only finite, in-range numbers, or a one-line SpecError naming the field. Deterministic:
hypothesis runs derandomized, the mutation run from a fixed seed; ``--fuzz-long`` runs 10x the count."""

from __future__ import annotations

import copy
import math
import random
import re
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fabric.data.datasets import DATASETS
from fabric.data.encode import ENCODERS
from fabric.kinds import kinds
from fabric.spec import (
    MAX_BATCH_SIZE,
    MAX_LR,
    MAX_THRESHOLD,
    Spec,
    SpecError,
    load_spec,
    parse_spec,
)
from tests.unit.fuzz_schema import HOSTILE_VALUES, from_schema, is_finite_everywhere

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = {str(p.relative_to(ROOT / "examples")): p.read_text() for p in sorted((ROOT / "examples").rglob("*.yaml"))}
SCHEMA = Spec.model_json_schema()
FIELDS = set(Spec.model_fields)
SCHEMA_CASES = 800  # CI counts (hypothesis costs ~10 ms a case here); x10 with --fuzz-long
MUTATION_CASES = 2500
# the first segment of an error path: a Spec field, or where in the file/document it is
WHERE = re.compile(r"^(<root>|<file>|line \d+|(?P<field>[A-Za-z_]+))")


def _check(outcome: Any, source: str) -> str | None:
    """None if ``outcome`` (a Spec or the exception parse/load raised) is acceptable, else why not."""
    if isinstance(outcome, SpecError):
        msg = str(outcome)
        if "\n" in msg or not msg.startswith(f"invalid {source}: ") or not outcome.errors:
            return f"error not one line naming a field: {msg[:200]!r}"
        for path, why in outcome.errors:
            m = WHERE.match(path)
            unknown_key = why.startswith(("Extra inputs", "Keys should be strings")) and path  # names the key itself
            if not unknown_key and (m is None or (m.group("field") and m.group("field") not in FIELDS)):
                return f"error path {path!r} names no spec field: {msg[:200]!r}"
        return None
    if isinstance(outcome, BaseException):
        return f"raw {type(outcome).__name__}: {str(outcome)[:200]}"
    spec: Spec = outcome
    dumped = spec.to_dict()
    if not is_finite_everywhere(dumped):
        return f"a non-finite value passed the door: {dumped}"
    t, m = spec.train, spec.model
    if not (0 < t.batch_size <= MAX_BATCH_SIZE and 0 < spec.eval_batch_size <= MAX_BATCH_SIZE and 0 < t.lr <= MAX_LR
            and 0 < m.threshold <= MAX_THRESHOLD and 0 <= spec.seed < 2**32):
        return f"out-of-range value passed the door: {dumped}"
    again = parse_spec(dumped, source)  # what the spec stage stores must read back as the same spec
    if again.hash != spec.hash:
        return f"to_dict/from_dict changed the spec: {dumped}"
    return None


def _parse(data: Any, source: str) -> Any:
    try:
        return parse_spec(data, source)
    except Exception as exc:  # noqa: BLE001 - anything but SpecError is a finding
        return exc


def _load(path: Path) -> Any:
    try:
        return load_spec(path)
    except Exception as exc:  # noqa: BLE001
        return exc


def test_specs_generated_from_the_schema(fuzz):
    examples = {"name": sorted(DATASETS) + sorted(ENCODERS) + ["tiny", "a.b-c_1"], "targets": kinds(),
                "template": ["lif_mlp"]}
    spec_st = from_schema(SCHEMA, SCHEMA["$defs"], examples=examples, hostile=False).filter(lambda d: isinstance(d, dict))
    hostile_st = from_schema(SCHEMA, SCHEMA["$defs"], examples=examples, hostile=True)
    failures: list[str] = []
    seen = {"cases": 0, "valid": 0}

    @settings(max_examples=fuzz.n(SCHEMA_CASES), deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(data=st.one_of(spec_st, hostile_st))
    def run(data: Any) -> None:
        seen["cases"] += 1
        try:
            text = yaml.safe_dump(data, allow_unicode=True)  # the form a user writes: through YAML and back
        except yaml.YAMLError:
            text = None
        doc = yaml.safe_load(text) if text is not None else data
        outcome = _parse(doc, "fuzz.yaml")
        seen["valid"] += isinstance(outcome, Spec)
        why = _check(outcome, "fuzz.yaml")
        if why:
            failures.append(why)

    run()
    fuzz.record("spec", seen["cases"], len(failures))
    assert seen["cases"] >= fuzz.n(SCHEMA_CASES) * 0.9 and not failures, failures[:5]


# -- seeded mutations of the example specs ----------------------------------------------------------

NUMBER = re.compile(r"(?<![\w.])-?\d+(\.\d+)?(e-?\d+)?(?![\w.])")
BAD_NUMBERS = [".inf", "-.inf", ".nan", ".NaN", "1e999", "-1e999", "1000000000000", "99999999999999999999999",
               "-1", "0", "0.0", "1e-400", "true", "null", "'3'", "[1, 2]", "{a: 1}", "0x10", "1_000"]


def _dicts(d: Any, out: list[dict[str, Any]]) -> list[dict[str, Any]]:
    if isinstance(d, dict):
        out.append(d)
        for v in d.values():
            _dicts(v, out)
    elif isinstance(d, list):
        for v in d:
            _dicts(v, out)
    return out


def _tree_mutation(rng: random.Random, data: dict[str, Any]) -> dict[str, Any]:
    data = copy.deepcopy(data)
    for _ in range(rng.randint(1, 3)):
        holder = rng.choice(_dicts(data, []))
        op = rng.randrange(6)
        key = rng.choice(sorted(holder)) if holder else None
        if op == 0 or key is None:  # an unknown key
            holder[rng.choice(["extra", "lr ", "Threshold", "targets2", "x" * 40, "", "__class__"])] = 1
        elif op == 1:  # a hostile value in place of a leaf or subtree
            holder[key] = rng.choice([math.nan, math.inf, -math.inf, 10**12, 2**64, -(10**9), 1e308, "x", "", None,
                                      True, [], {}, [math.inf], {"a": math.nan}, 0, -0.0, 1e-320])
        elif op == 2:
            del holder[key]
        elif op == 3:  # right value, wrong container
            holder[key] = [holder[key]] if rng.random() < 0.5 else {"value": holder[key]}
        elif op == 4 and isinstance(holder[key], int | float) and not isinstance(holder[key], bool):
            holder[key] = holder[key] * rng.choice([-1, 0, 10, 1e6, 1e300, 1e-300])
        else:
            holder[key] = str(holder[key])
    return data


def _text_mutation(rng: random.Random, text: str) -> str:
    for _ in range(rng.randint(1, 3)):
        op = rng.randrange(5)
        numbers = list(NUMBER.finditer(text))
        if op <= 1 and numbers:  # a number token replaced by a non-finite / huge / wrong-typed one
            m = rng.choice(numbers)
            text = text[:m.start()] + rng.choice(BAD_NUMBERS) + text[m.end():]
        elif op == 2:  # truncated file
            text = text[:rng.randrange(len(text) + 1)]
        elif op == 3:  # a stray character
            i = rng.randrange(len(text) + 1)
            text = text[:i] + rng.choice([":", "-", "[", "{", "'", '"', "\t", " ", "\n", "&", "*", "!", "%", "#", "\x00"]) \
                + text[i:]
        else:  # a line duplicated (duplicate key) or dropped
            lines = text.splitlines()
            if lines:
                i = rng.randrange(len(lines))
                lines[i:i + 1] = [lines[i]] * rng.choice([0, 2])
                text = "\n".join(lines)
    return text


def test_mutated_example_specs(fuzz, tmp_path):
    rng = random.Random(18)
    trees = {name: yaml.safe_load(text) for name, text in EXAMPLES.items()}
    failures: list[str] = []
    n = fuzz.n(MUTATION_CASES)
    path = tmp_path / "mutant.yaml"
    for i in range(n):
        name = rng.choice(sorted(EXAMPLES))
        if i % 2:
            outcome = _parse(_tree_mutation(rng, trees[name]), name)
            source = name
        else:
            path.write_text(_text_mutation(rng, EXAMPLES[name]), errors="surrogateescape")
            outcome, source = _load(path), str(path)
        why = _check(outcome, source)
        if why:
            failures.append(f"case {i} ({name}): {why}")
    fuzz.record("spec", n, len(failures))
    assert not failures, failures[:5]


def test_hostile_values_in_every_leaf_of_every_example(fuzz):
    """Each leaf of each example set to each hostile value in turn: the systematic part of the run."""
    failures: list[str] = []
    n = 0
    for name, text in EXAMPLES.items():
        tree = yaml.safe_load(text)
        for holder in _dicts(tree, []):
            for key in list(holder):
                old = holder[key]
                for v in HOSTILE_VALUES:
                    holder[key] = v
                    n += 1
                    why = _check(_parse(copy.deepcopy(tree), name), name)
                    if why:
                        failures.append(f"{name} {key}={v!r}: {why}")
                holder[key] = old
    fuzz.record("spec", n, len(failures))
    assert n >= 500 and not failures, failures[:5]
