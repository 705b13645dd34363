"""Hypothesis strategies from a JSON Schema (a pydantic model's, or an OpenAPI body's), for the fuzz suites.

Why our own and not schemathesis: it is not installed, and the suites need values that are *mostly*
well-formed (so they reach the validators behind the schema) with hostile ones mixed in at every level:
non-finite and huge numbers, wrong types, out-of-range values, unknown keys, missing required keys.
"""

from __future__ import annotations

import math
from typing import Any

from hypothesis import strategies as st

__all__ = ["HOSTILE", "HOSTILE_VALUES", "from_schema", "is_finite_everywhere"]

# values that break some constraint of almost any field
HOSTILE_VALUES: list[Any] = [math.nan, math.inf, -math.inf, 1e308, -1e308, 10**30, -(10**30), 2**63, -1, 0, 1e-320,
                           "", "x" * 300, "\x00", "../../etc/passwd", None, True, False, [], {}, [[[]]], {"": None},
                           "1e999", "NaN", "Infinity"]
HOSTILE = st.sampled_from(HOSTILE_VALUES)


def is_finite_everywhere(x: Any) -> bool:
    """True when no float inside ``x`` (nested dicts/lists) is NaN or infinite."""
    if isinstance(x, float):
        return math.isfinite(x)
    if isinstance(x, dict):
        return all(is_finite_everywhere(v) for v in x.values())
    if isinstance(x, list | tuple):
        return all(is_finite_everywhere(v) for v in x)
    return True


def _number(schema: dict[str, Any], integer: bool) -> st.SearchStrategy[Any]:
    lo = schema.get("minimum", schema.get("exclusiveMinimum"))
    hi = schema.get("maximum", schema.get("exclusiveMaximum"))
    edges = [v for v in (lo, hi) if v is not None]
    near = [e + d for e in edges for d in (-1, 0, 1)] + [e * 10 for e in edges if e] + [e / 2 for e in edges if e]
    if integer:
        inside = st.integers(min_value=int(lo) if lo is not None else -(10**6),
                             max_value=int(hi) if hi is not None else 10**6)
        near_s = st.sampled_from([int(v) for v in near]) if near else st.integers()
        return st.one_of(inside, inside, near_s, st.integers())
    inside = st.floats(min_value=float(lo) if lo is not None else -1e6, max_value=float(hi) if hi is not None else 1e6,
                       allow_nan=False, allow_infinity=False)
    near_s = st.sampled_from([float(v) for v in near]) if near else st.floats()
    return st.one_of(inside, inside, near_s, st.floats(), st.integers(min_value=-(10**20), max_value=10**20))


def _string(schema: dict[str, Any], examples: dict[str, list[Any]], name: str | None) -> st.SearchStrategy[Any]:
    lo, hi = schema.get("minLength", 0), min(schema.get("maxLength", 24), 24)
    base: list[st.SearchStrategy[Any]] = [st.text(min_size=lo, max_size=max(lo, hi)),
                                          st.text(alphabet="0123456789abcdef", min_size=lo, max_size=max(lo, hi, 12))]
    if "pattern" in schema:
        base.append(st.from_regex(schema["pattern"], fullmatch=True))
    if name in examples:
        base += [st.sampled_from(examples[name])] * 3
    return st.one_of(*base)


def from_schema(schema: dict[str, Any], defs: dict[str, Any], *, examples: dict[str, list[Any]] | None = None,
                hostile: bool = True, depth: int = 0, name: str | None = None) -> st.SearchStrategy[Any]:
    """Values for ``schema`` (``$ref`` resolved in ``defs``); ``examples`` maps a property name to
    known-good values (ids, versions) so that some cases pass validation and reach the code behind it."""
    examples = examples or {}
    inner = _from_schema(schema, defs, examples, hostile, depth, name)
    if not hostile:
        return inner
    return st.one_of(inner, inner, inner, HOSTILE)


def _from_schema(schema: dict[str, Any], defs: dict[str, Any], examples: dict[str, list[Any]], hostile: bool,
                 depth: int, name: str | None) -> st.SearchStrategy[Any]:
    if "$ref" in schema:
        return _from_schema(defs[schema["$ref"].rsplit("/", 1)[-1]], defs, examples, hostile, depth, name)
    for key in ("anyOf", "oneOf", "allOf"):
        if key in schema:
            return st.one_of(*[_from_schema(s, defs, examples, hostile, depth, name) for s in schema[key]])
    if "const" in schema:
        return st.just(schema["const"])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    kind = schema.get("type")
    if isinstance(kind, list):
        return st.one_of(*[_from_schema(dict(schema, type=k), defs, examples, hostile, depth, name) for k in kind])
    if kind == "null":
        return st.none()
    if kind == "boolean":
        return st.booleans()
    if kind == "integer":
        return _number(schema, integer=True)
    if kind == "number":
        return _number(schema, integer=False)
    if kind == "string":
        return _string(schema, examples, name)
    if depth > 4:
        return st.none()
    sub = {"defs": defs, "examples": examples, "hostile": hostile, "depth": depth + 1}
    if kind == "array" or "items" in schema:
        items = from_schema(schema.get("items", {}), name=name, **sub)  # items take the array's examples
        return st.lists(items, min_size=schema.get("minItems", 0), max_size=min(schema.get("maxItems", 4), 4))
    if kind == "object" or "properties" in schema:
        props = schema.get("properties", {})
        required = set(schema.get("required", ()))
        strategies = {k: from_schema(v, name=k, **sub) for k, v in props.items()}
        req = {k: s for k, s in strategies.items() if k in required}
        opt = {k: s for k, s in strategies.items() if k not in required}
        extra = schema.get("additionalProperties")
        free = st.dictionaries(st.text(max_size=8), HOSTILE, max_size=2)
        if isinstance(extra, dict) and not props:  # a free mapping (dict[str, X])
            return st.dictionaries(st.text(max_size=12), from_schema(extra, **sub), max_size=3)
        obj = st.fixed_dictionaries(req, optional=opt)
        if not hostile:
            return obj
        # sometimes an unknown key, sometimes a required one missing
        return st.one_of(obj, obj, obj, st.tuples(obj, free).map(lambda t: {**t[0], **t[1]}),
                         st.tuples(obj, st.sampled_from(sorted(req) or [""])).map(
                             lambda t: {k: v for k, v in t[0].items() if k != t[1]}))
    return st.one_of(HOSTILE, st.integers(), st.text(max_size=8))
