"""akida's reference adapter: the compiled program as a real BrainChip ``akida.Model`` (akida 2.19.3, PyPI).

Why: the emulator's integer arithmetic is only evidence if BrainChip's own engine agrees with it. The
``akida`` package builds v1 models from ``akida.InputData`` + ``akida.FullyConnected`` layers whose
``weights`` / ``threshold`` / ``act_step`` variables we set to the program's numbers; ``Model.forward``
then runs BrainChip's software backend (exact integer arithmetic). ``Model.map(akida.AKD1000(),
hw_only=True)`` is BrainChip's mapper onto a virtual AKD1000: NPs per type, program bytes, and an
explicit refusal when the model does not fit (``hw_only=False`` would silently fall back to software).
After mapping, ``forward`` needs a real board, so the model is mapped back with ``map(None)``.

What the engine cannot express is reported ``unavailable``, never a pass: hybrid programs (cpu parts),
and Conv2d programs (built as dense Toeplitz layers here; the Convolutional build is #12's).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from actors.akida.frame import FrameLayer, frame_forward, input_frame

__all__ = ["akida_version", "build_model", "MapReport", "map_on_akd1000", "check_program"]

ENGINE = "Model.forward"


def _akida() -> Any:
    try:
        import akida
    except ImportError:
        return None
    return akida


def akida_version() -> str | None:
    """The installed akida version (None when the package is missing)."""
    ak = _akida()
    return None if ak is None else str(ak.__version__)


def build_model(n_in: int, input_bits: int, layers: list[FrameLayer]) -> Any:
    """An ``akida.Model``: ``InputData((1, 1, n_in))`` then one ``FullyConnected`` per layer, variables set."""
    ak = _akida()
    m = ak.Model()
    m.add(ak.InputData((1, 1, int(n_in)), input_bits=int(input_bits)))
    for i, lay in enumerate(layers):
        n_out = int(lay.weights.shape[0])
        m.add(ak.FullyConnected(n_out, name=f"fc{i}", weights_bits=int(lay.weight_bits), act_bits=int(lay.act_bits),
                                activation=bool(lay.activation)))
        fc = m.get_layer(f"fc{i}")
        fc.set_variable("weights", np.ascontiguousarray(lay.weights.T.astype(np.int8)).reshape(1, 1, -1, n_out))
        if lay.activation:
            fc.set_variable("threshold", lay.threshold.astype(np.int32))
            fc.set_variable("act_step", lay.act_step)
    return m


@dataclass(kw_only=True)
class MapReport:
    """What BrainChip's mapper said about a model on a virtual AKD1000."""

    ok: bool
    error: str = ""
    nps_used: dict[str, int] = field(default_factory=dict)  # NP type -> count
    nps_available: dict[str, int] = field(default_factory=dict)  # NPs on the device that can take the type
    per_layer: list[tuple[str, list[str]]] = field(default_factory=list)
    program_bytes: int = 0
    program_memory: int = 0
    device: str = ""


def _type_name(t: Any) -> str:
    return str(t).rsplit(".", 1)[-1]


def map_on_akd1000(n_in: int, input_bits: int, layers: list[FrameLayer]) -> MapReport:
    """Map the model with ``hw_only=True`` on ``akida.AKD1000()``; a refusal becomes ``error``."""
    ak = _akida()
    dev = ak.AKD1000()
    avail = Counter(_type_name(t) for np_info in dev.mesh.nps for t in np_info.types)
    try:
        m = build_model(n_in, input_bits, layers)
        m.map(dev, hw_only=True)
    except Exception as exc:  # the engine's refusal (RuntimeError/ValueError) is the fit verdict's text
        return MapReport(ok=False, error=str(exc).strip(), nps_available=dict(avail), device=str(dev.desc))
    try:
        per_layer = [(lay.name, [_type_name(n.type) for n in m.get_layer(f"fc{i}").mapping.nps])
                     for i, lay in enumerate(layers)]
        progs = [s.program for s in m.sequences if s.program is not None]
        mem = sum(int(ak.get_program_memory_infos(p).program_memory) for p in progs)
        return MapReport(ok=True, nps_used={_type_name(k): int(v) for k, v in m.component_count.items()},
                         nps_available=dict(avail), per_layer=per_layer,
                         program_bytes=sum(len(p) for p in progs), program_memory=mem, device=str(dev.desc))
    finally:
        m.map(None)


def _unavailable(reason: str) -> dict[str, Any]:
    return {"status": "unavailable", "summary": reason, "samples": 0, "reason": reason}


def check_program(runtime: Any, program: Any, spikes: np.ndarray) -> dict[str, Any]:
    """Emulator (``runtime``, with ``program`` loaded) vs ``akida.Model.forward`` on ``spikes``, bit for bit.

    Compared: the last layer's integer outputs (potentials or activations) of every sample, then the
    runtime's returned ``counts`` against the same readout computed from the engine's outputs.
    """
    ver = akida_version()
    if ver is None:
        return _unavailable("akida is not installed (pip install akida==2.19.3); no BrainChip reference")
    fb = program.meta.get("fallback")
    if fb is not None:
        nodes = [*fb.get("prefix_nodes", []), *fb.get("tail_nodes", [])]
        return _unavailable(f"hybrid program: nodes {nodes} run on kind 'cpu', which akida cannot express; "
                            "no bit-exact claim is made for it")
    if program.meta.get("conv"):
        return _unavailable(f"Conv2d layers {sorted(program.meta['conv'])} are emulated as dense Toeplitz layers; "
                            "the akida Convolutional build is not done yet, so no bit-exact claim is made")
    x = np.asarray(spikes, dtype=np.float32)
    if runtime.program is not program:
        runtime.load(program)
    o, steps = program.meta["options"], int(x.shape[1])
    layers = runtime.frame_layers(steps)
    # the engine gets the program's own integer weights; the emulator runs its loaded copy
    engine_layers = [replace(lay, weights=np.asarray(program.arrays[f"l{i}.wq"])) for i, lay in enumerate(layers)]
    frame, _ = input_frame(x, o["input_bits"])
    model = build_model(frame.shape[1], o["input_bits"], engine_layers)
    ref = np.asarray(model.forward(frame.astype(np.uint8).reshape(len(frame), 1, 1, -1))).reshape(len(frame), -1)
    ref = ref.astype(np.int64)
    emu = frame_forward(layers, frame)[-1][1]
    res = runtime.run(x)
    counts_ref = layers[-1].score(ref)
    what = (f"{len(layers)} FullyConnected layer(s), weight bits {[lay.weight_bits for lay in layers]}, "
            f"act bits {o['act_bits']}, input bits {o['input_bits']}, "
            f"{'potential' if not layers[-1].activation else 'activation'} readout")
    base = {"samples": int(len(frame)), "outputs_compared": int(ref.size), "reference": f"akida {ver} {ENGINE}",
            "layers": what}
    diff = emu != ref
    if diff.any():
        s, j = (int(v) for v in np.argwhere(diff)[0])
        first = {"sample": s, "output": j, "emulator": int(emu[s, j]), "engine": int(ref[s, j])}
        return {"status": "mismatch", **base, "max_error": int(np.max(np.abs(emu - ref))),
                "first_mismatch": first, "mismatches": int(diff.sum()),
                "summary": (f"{int(diff.sum())} of {ref.size} outputs differ from akida {ver} {ENGINE}; first: "
                            f"sample {s}, output {j}: emulator {first['emulator']}, engine {first['engine']} ({what})")}
    if not np.array_equal(np.asarray(res.counts, dtype=np.float64), counts_ref):
        bad = np.argwhere(np.asarray(res.counts, dtype=np.float64) != counts_ref)[0]
        s, j = int(bad[0]), int(bad[1])
        first = {"sample": s, "output": j, "emulator": float(res.counts[s, j]), "engine": float(counts_ref[s, j])}
        return {"status": "mismatch", **base, "max_error": float(np.max(np.abs(res.counts - counts_ref))),
                "first_mismatch": first, "mismatches": int((res.counts != counts_ref).sum()),
                "summary": (f"integer outputs agree but the runtime's counts differ from the readout of the engine's "
                            f"outputs; first: sample {s}, output {j}")}
    return {"status": "bit-exact", **base, "max_error": 0, "first_mismatch": None, "mismatches": 0,
            "summary": f"{len(frame)} samples x {ref.shape[1]} outputs identical to akida {ver} {ENGINE} ({what})"}
