"""One in-process stand-in for the Ray device pool, for unit tests that run stages without Ray."""

from __future__ import annotations

from typing import Any

import numpy as np

from fabric.kinds import make_runtime


class LocalPool:
    """The pool surface the stages use (``compile``, ``run``, ``actors``) on one in-process runtime."""

    def __init__(self, kind: str, **_: object) -> None:
        self.kind, self.rt = kind, make_runtime(kind)
        self.actors = [self.rt]

    def compile(self, graph: Any, options: dict[str, Any] | None = None) -> Any:
        return self.rt.compile(graph, options)

    def run(self, program: Any, batches: list[np.ndarray], record_raster: bool = False,
            progress: Any | None = None) -> list[Any]:
        self.rt.load(program)
        out = []
        for b in batches:
            out.append(self.rt.run(b, record_raster=record_raster))
            if progress is not None:
                progress.update(1)
        return out
