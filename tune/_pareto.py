"""Pure result maths: the non-dominated set of measured rows and the ``--select`` expression language.

``select`` parses a tiny grammar with a hand-written tokenizer and recursive-descent parser (never
``eval``), so a user's expression can only compare metric names with numbers::

    expr   := term ("or" term)*
    term   := factor ("and" factor)*
    factor := "(" expr ")" | NAME OP VALUE | "not" factor
    OP     := < | <= | > | >= | == | !=
    VALUE  := number | word            (words compare with == / != only, e.g. kind == loihi)
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from fabric.kpis import objectives

__all__ = ["OBJECTIVES", "SelectError", "pareto_front", "pareto_fronts", "front_union", "select", "select_per_kind",
           "parse_select", "feasible", "rank_key", "objective_names", "per_kind_objectives"]

# objective (a KPI's per-inference alias) -> "max" / "min", from fabric.kpis; the order is the
# tie-break order of ``select``
OBJECTIVES: dict[str, str] = objectives()


def _vector(row: Mapping[str, Any], objectives: Mapping[str, str]) -> tuple[float, ...] | None:
    """Metrics turned into 'smaller is better' numbers; None when a metric is missing or not finite."""
    metrics = row.get("metrics") or {}
    out = []
    for name, mode in objectives.items():
        v = metrics.get(name)
        if v is None or not isinstance(v, (int, float)) or not math.isfinite(v):
            return None
        if mode not in ("min", "max"):
            raise ValueError(f"objective {name!r}: mode must be 'min' or 'max', got {mode!r}")
        out.append(-float(v) if mode == "max" else float(v))
    return tuple(out)


def pareto_front(rows: Sequence[Mapping[str, Any]], objectives: Mapping[str, str] = OBJECTIVES) -> list[int]:
    """Indices (ascending) of the rows no other row dominates.

    A row dominates another when it is at least as good on every objective and strictly better on
    one. Rows with identical metrics do not dominate each other, so ties are all on the front. Rows
    lacking a metric (not measured: did not fit, stopped early, failed) are never on the front.
    """
    vecs = [_vector(r, objectives) for r in rows]
    front = []
    for i, a in enumerate(vecs):
        if a is None:
            continue
        dominated = any(
            b is not None and j != i and all(x <= y for x, y in zip(b, a, strict=True)) and b != a
            for j, b in enumerate(vecs)
        )
        if not dominated:
            front.append(i)
    return front


def pareto_fronts(rows: Sequence[Mapping[str, Any]], objectives: Mapping[str, str] = OBJECTIVES) -> dict[str, list[int]]:
    """One front per kind: kind -> indices (into ``rows``, ascending) of that kind's non-dominated rows.

    Rows are only compared with rows of the same kind: a figure on one device says nothing about a
    candidate on another (a 0.15 ms latency on one kind and 26 ms on another are not one scale).
    Every kind present in ``rows`` has an entry (empty when none of its rows was measured).
    """
    out: dict[str, list[int]] = {}
    for kind in dict.fromkeys(str(r.get("kind")) for r in rows):
        idx = [i for i, r in enumerate(rows) if str(r.get("kind")) == kind]
        out[kind] = [idx[j] for j in pareto_front([rows[i] for i in idx], objectives)]
    return out


def front_union(fronts: Mapping[str, Sequence[int]]) -> list[int]:
    """Every row on some kind's front, ascending (the artifact's ``front`` and rows' ``on_front``)."""
    return sorted({i for f in fronts.values() for i in f})


def objective_names(kinds: Sequence[str], objectives: Mapping[str, str] = OBJECTIVES) -> dict[str, str]:
    """The searcher's objectives: ``metric@kind`` -> mode for every kind and objective (never a mean
    over kinds), kind-major in ``kinds`` order."""
    return {f"{m}@{k}": mode for k in kinds for m, mode in objectives.items()}


def per_kind_objectives(rows: Sequence[Mapping[str, Any]], kinds: Sequence[str],
                        objectives: Mapping[str, str] = OBJECTIVES) -> dict[str, float]:
    """A trial's objective vector for the searcher from its per-kind rows (``kind``, ``status``,
    ``metrics``): each kind's measured figures under ``metric@kind``; a kind the trial was not
    measured on (did not fit) gets the worst value (accuracy 0, costs +inf), so it is dominated there
    by any candidate that fits. Empty when no kind was measured (the searcher is told PRUNED)."""
    by_kind = {str(r["kind"]): r for r in rows if r.get("status") == "ok" and _vector(r, objectives) is not None}
    if not by_kind:
        return {}
    out = {}
    for k in kinds:
        for m, mode in objectives.items():
            r = by_kind.get(k)
            out[f"{m}@{k}"] = float(r["metrics"][m]) if r is not None else (0.0 if mode == "max" else math.inf)
    return out


class SelectError(ValueError):
    """A ``--select`` expression that cannot be used; the message names the bad token and column."""


_TOKEN = re.compile(r"\s*(?:(?P<num>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)|(?P<op><=|>=|==|!=|<|>)"
                    r"|(?P<par>[()])|(?P<word>[A-Za-z_][A-Za-z0-9_.-]*)|(?P<bad>\S))")
_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "<": lambda a, b: a < b, "<=": lambda a, b: a <= b, ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b, "==": lambda a, b: a == b, "!=": lambda a, b: a != b,
}
Predicate = Callable[[Mapping[str, Any]], bool]


def _tokens(expr: str) -> list[tuple[str, str, int]]:
    out = []
    for m in _TOKEN.finditer(expr):
        kind = m.lastgroup or "bad"
        if kind == "bad":
            raise SelectError(f"select: unexpected character {m.group(kind)!r} at column {m.start(kind) + 1}")
        out.append((kind, m.group(kind), m.start(kind) + 1))
    return out


class _Parser:
    def __init__(self, expr: str, names: Sequence[str]) -> None:
        self.toks, self.i, self.names = _tokens(expr), 0, list(names)
        if not self.toks:
            raise SelectError("select: empty expression; e.g. \"latency_ms<5 and energy_mj<0.5\"")

    def peek(self) -> tuple[str, str, int] | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def take(self, what: str) -> tuple[str, str, int]:
        tok = self.peek()
        if tok is None:
            raise SelectError(f"select: expression ends where {what} was expected")
        self.i += 1
        return tok

    def expr(self) -> Predicate:
        parts = [self.term()]
        while (t := self.peek()) is not None and t[0] == "word" and t[1].lower() == "or":
            self.i += 1
            parts.append(self.term())
        return parts[0] if len(parts) == 1 else (lambda r, ps=tuple(parts): any(p(r) for p in ps))

    def term(self) -> Predicate:
        parts = [self.factor()]
        while (t := self.peek()) is not None and t[0] == "word" and t[1].lower() == "and":
            self.i += 1
            parts.append(self.factor())
        return parts[0] if len(parts) == 1 else (lambda r, ps=tuple(parts): all(p(r) for p in ps))

    def factor(self) -> Predicate:
        kind, text, col = self.take("a metric name or '('")
        if kind == "par" and text == "(":
            inner = self.expr()
            k2, t2, c2 = self.take("')'")
            if t2 != ")":
                raise SelectError(f"select: expected ')' at column {c2}, got {t2!r}")
            return inner
        if kind == "word" and text.lower() == "not":
            inner = self.factor()
            return lambda r: not inner(r)
        if kind != "word" or text.lower() in ("and", "or"):
            raise SelectError(f"select: expected a metric name at column {col}, got {text!r}")
        if text not in self.names:
            raise SelectError(f"select: unknown name {text!r} at column {col}; known: {sorted(self.names)}")
        okind, op, ocol = self.take(f"a comparison after {text!r}")
        if okind != "op":
            raise SelectError(f"select: expected a comparison (<, <=, >, >=, ==, !=) at column {ocol}, got {op!r}")
        vkind, vtext, vcol = self.take(f"a value after {text!r} {op}")
        if vkind == "num":
            value: Any = float(vtext)
        elif vkind == "word" and vtext.lower() not in ("and", "or", "not"):
            if op not in ("==", "!="):
                raise SelectError(f"select: {vtext!r} at column {vcol} is a word; words compare with == or != only")
            value = vtext
        else:
            raise SelectError(f"select: expected a number at column {vcol}, got {vtext!r}")
        fn, name = _OPS[op], text

        def pred(row: Mapping[str, Any]) -> bool:
            v = _lookup(row, name)
            if v is None:
                return False
            if isinstance(value, str):
                return fn(str(v), value)
            return isinstance(v, (int, float)) and math.isfinite(v) and fn(float(v), value)

        return pred


def _lookup(row: Mapping[str, Any], name: str) -> Any:
    metrics = row.get("metrics") or {}
    return metrics[name] if name in metrics else row.get(name)


def parse_select(expr: str, names: Sequence[str] = (*OBJECTIVES, "kind")) -> Predicate:
    """Compile ``expr`` to a predicate over result rows; SelectError names the bad token."""
    p = _Parser(expr, names)
    pred = p.expr()
    if (t := p.peek()) is not None:
        raise SelectError(f"select: unexpected {t[1]!r} at column {t[2]}; join comparisons with 'and' / 'or'")
    return pred


def feasible(rows: Sequence[Mapping[str, Any]], expr: str) -> list[int]:
    """Indices of measured rows satisfying ``expr``."""
    pred = parse_select(expr)
    return [i for i, r in enumerate(rows) if _vector(r, OBJECTIVES) is not None and pred(r)]


def rank_key(row: Mapping[str, Any], objectives: Mapping[str, str] = OBJECTIVES) -> tuple[float, ...]:
    """Sort key: best accuracy first, then lower latency, energy, footprint (the objective order)."""
    v = _vector(row, objectives)
    return v if v is not None else tuple(math.inf for _ in objectives)


def select(rows: Sequence[Mapping[str, Any]], expr: str) -> tuple[int, Mapping[str, Any]] | None:
    """The best feasible row ``(index, row)`` for ``expr``, or None when no measured row satisfies it.

    "Best" is the highest accuracy, ties broken by lower latency, energy, then footprint; such a row
    is never dominated by another feasible row.
    """
    idx = feasible(rows, expr)
    if not idx:
        return None
    best = min(idx, key=lambda i: (rank_key(rows[i]), i))
    return best, rows[best]


def select_per_kind(rows: Sequence[Mapping[str, Any]], expr: str) -> dict[str, tuple[int, Mapping[str, Any]]]:
    """The best feasible row of each kind for ``expr`` (kind -> ``(index, row)``; kinds with no
    feasible row are left out). Ranking as :func:`select`, but only among one kind's rows."""
    out: dict[str, tuple[int, Mapping[str, Any]]] = {}
    for i in feasible(rows, expr):
        kind = str(rows[i].get("kind"))
        if kind not in out or (rank_key(rows[i]), i) < (rank_key(out[kind][1]), out[kind][0]):
            out[kind] = (i, rows[i])
    return dict(sorted(out.items()))
