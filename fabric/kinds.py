"""The device-kind registry as data, and each kind's declared capabilities.

Why: the core must never import device code (Lava's core never imports a process model). Kinds and
their ``"module:Class"`` runtimes are lines in a registry file (``actors/registry.toml`` plus any
file named in ``FABRIC_KINDS``); a runtime module is imported only when its kind is used, and
everything the core needs to know about a kind (does it need a custom resource, can it fall back to
cpu, its weight precision, whether a reference engine checks it, what its latency means) is a
:class:`Capabilities` record the runtime class declares. Nothing outside ``actors/`` compares a
kind's name.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import importlib.util
import os
import tomllib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "Capabilities", "UnknownKindError", "REGISTRY_ENV", "registry", "kinds", "runtime_class", "make_runtime",
    "capabilities", "kind_package", "code_digest", "device_kinds", "embedded_resources", "layer", "device_pool", "check_kind",
]

REGISTRY_ENV = "FABRIC_KINDS"
TIME_MODES = ("realtime", "as-fast-as-possible", "frame", "host")


@dataclass(frozen=True, kw_only=True)
class Capabilities:
    """What a kind declares about itself; read by the core instead of comparing kind names."""

    needs_resource: bool = True  # placed on a Ray custom resource named after the kind ({kind: 1})
    embedded_boards: int = 1  # boards the embedded (local) fabric advertises for this kind
    hybrid_fallback: bool = True  # compile(..., fallback="hybrid") runs unsupported layers on cpu
    weight_bits: int | None = None  # per-synapse weight precision (None: float or no per-synapse weight)
    weight_bits_source: str = ""  # where that figure comes from (public source)
    reference: str | None = None  # the reference engine a golden check compares against, if any
    time_mode: str = "realtime"  # what device latency means: see TIME_MODES
    latency: str = "modelled"  # "modelled" (emulated device time) or "measured" (host wall time)
    emulated: bool = True
    # the runtime has ``step(spikes, state)``: network state carried between chunks of one stream (a
    # serving session); False: every run starts from rest, and streaming routes refuse the kind
    stateful_stream: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Capabilities:
        return cls(**d)


class UnknownKindError(KeyError):
    """An unknown device kind; the message lists the valid ones."""

    def __init__(self, kind: str, where: str = "device kind") -> None:
        self.kind = kind
        super().__init__(f"unknown {where} {kind!r}; valid kinds: {kinds()}")

    def __str__(self) -> str:  # KeyError quotes its message otherwise
        return self.args[0]


def _builtin_registry_file() -> Path | None:
    spec = importlib.util.find_spec("actors")  # locates the package without importing it
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "registry.toml"
    return path if path.exists() else None


_CACHE: dict[tuple[str, ...], dict[str, dict[str, str]]] = {}


def _files() -> tuple[str, ...]:
    extra = [p for p in os.environ.get(REGISTRY_ENV, "").split(os.pathsep) if p]
    base = _builtin_registry_file()
    return tuple(([str(base)] if base else []) + extra)


def _load() -> dict[str, dict[str, str]]:
    files = _files()
    if files not in _CACHE:
        out: dict[str, dict[str, str]] = {"kinds": {}, "layers": {}}
        for f in files:
            try:
                raw = tomllib.loads(Path(f).read_text())
            except (OSError, tomllib.TOMLDecodeError) as exc:
                raise ValueError(f"{REGISTRY_ENV}: cannot read kind registry {f}: {exc}") from None
            for section in ("kinds", "layers"):
                for k, v in (raw.get(section) or {}).items():
                    if not isinstance(v, str) or ":" not in v:
                        raise ValueError(f"{f}: [{section}] {k} must be \"module:Class\", got {v!r}")
                    out[section][k] = v
        _CACHE[files] = out
    return _CACHE[files]


def registry() -> dict[str, str]:
    """kind -> ``"module:Class"`` (built-in kinds first, then ``FABRIC_KINDS`` files in order)."""
    return dict(_load()["kinds"])


def kinds() -> list[str]:
    """Every registered kind, in registry order."""
    return list(_load()["kinds"])


def check_kind(kind: str, where: str = "device kind") -> str:
    if kind not in _load()["kinds"]:
        raise UnknownKindError(kind, where)
    return kind


def _resolve(target: str) -> Any:
    module, attr = target.split(":", 1)
    return getattr(importlib.import_module(module), attr)


def runtime_class(kind: str) -> type:
    """The runtime class of ``kind`` (imports its module now, not before)."""
    return _resolve(_load()["kinds"][check_kind(kind)])


def make_runtime(kind: str, **kwargs: Any) -> Any:
    """Instantiate the runtime for ``kind`` in this process (no Ray)."""
    return runtime_class(kind)(**kwargs)


def capabilities(kind: str) -> Capabilities:
    caps = getattr(runtime_class(kind), "capabilities", None)
    return caps if isinstance(caps, Capabilities) else Capabilities()


def kind_package(kind: str) -> str:
    """The package (device folder) that holds ``kind``'s runtime, its constants and its maths."""
    module = _load()["kinds"][check_kind(kind)].split(":", 1)[0]
    spec = importlib.util.find_spec(module)
    if spec is not None and spec.submodule_search_locations:  # the runtime is a package itself
        return module
    return module.rpartition(".")[0] or module


def _kind_folder(kind: str) -> Path:
    spec = importlib.util.find_spec(kind_package(kind))
    if spec is None or not spec.submodule_search_locations:
        raise ValueError(f"kind {kind!r}: package {kind_package(kind)!r} has no folder to digest")
    return Path(next(iter(spec.submodule_search_locations)))


@functools.cache
def _folder_digest(kind: str, folder: str) -> str:
    h = hashlib.sha256()
    root = Path(folder)
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix in (".py", ".yaml")
                   and "__pycache__" not in p.parts)
    for p in files:
        h.update(p.relative_to(root).as_posix().encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()


@functools.cache
def _shared_digest(kind: str) -> str:
    """sha256 over the source files of the runtime's base classes outside its own folder (e.g. the
    shared emulated runtime and energy model): a change there changes every kind built on them."""
    import inspect

    folder = _kind_folder(kind).resolve()
    h = hashlib.sha256()
    seen: set[str] = set()
    for cls in runtime_class(kind).__mro__:
        try:
            path = Path(inspect.getfile(cls)).resolve()
        except (TypeError, OSError):  # builtins (object, ABC's C parts)
            continue
        if folder in path.parents or str(path) in seen or "site-packages" in path.parts or not path.exists():
            continue
        seen.add(str(path))
        h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def code_digest(kind: str) -> str:
    """sha256 over the kind's device folder (its ``.py`` files and ``constants.yaml``, read as files)
    and the source of the runtime's base classes outside it (``actors/base``).

    Why: compile/evaluate/golden cache keys include it, so a changed constant or emulator re-runs those
    stages instead of reusing stale KPI rows. Computed once per process (``code_digest.cache_clear()``
    forgets it).
    """
    return hashlib.sha256((_folder_digest(kind, str(_kind_folder(kind))) + _shared_digest(kind)).encode()).hexdigest()


def _clear_digests() -> None:
    _folder_digest.cache_clear()
    _shared_digest.cache_clear()


code_digest.cache_clear = _clear_digests  # type: ignore[attr-defined]


def device_kinds() -> list[str]:
    """Kinds that are boards (need their custom resource), in registry order."""
    return [k for k in kinds() if capabilities(k).needs_resource]


def embedded_resources() -> dict[str, int]:
    """The device resources the embedded fabric advertises by default (one Ray resource per board kind)."""
    return {k: capabilities(k).embedded_boards for k in device_kinds() if capabilities(k).embedded_boards > 0}


def layer(name: str) -> Any:
    """A late-bound layer named in the registry's ``[layers]`` (e.g. ``pool``: the Ray layer)."""
    try:
        return _resolve(_load()["layers"][name])
    except KeyError:
        raise KeyError(f"kind registry has no [layers] {name!r}; have {sorted(_load()['layers'])}") from None


def device_pool(kind: str, **kwargs: Any) -> Any:
    """A pool of ``kind``'s board actors (the Ray layer, resolved from the registry)."""
    return layer("pool")(check_kind(kind), **kwargs)
