"""akida's reference adapter: the compiled program as a real BrainChip ``akida.Model`` (akida 2.19.3, PyPI).

Why: the emulator's integer arithmetic is only evidence if BrainChip's own engine agrees with it. The
``akida`` package builds v1 models from ``akida.InputData`` + ``akida.FullyConnected`` layers whose
``weights`` / ``threshold`` / ``act_step`` variables we set to the program's numbers; ``Model.forward``
then runs BrainChip's software backend (exact integer arithmetic). ``Model.map(akida.AKD1000(),
hw_only=True)`` is BrainChip's mapper onto a virtual AKD1000: NPs per type, program bytes, and an
explicit refusal when the model does not fit (``hw_only=False`` would silently fall back to software).
After mapping, ``forward`` needs a real board, so the model is mapped back with ``map(None)``.

Conv2d programs are built as ``InputConvolutional`` (first layer) / ``Convolutional`` layers from the
program's integer kernels and per-filter thresholds, and every layer's integer output is compared (the
engine model cut after each layer). What the engine cannot express is reported ``unavailable``, never a
pass: hybrid programs (cpu parts), and conv padding other than akida's "Valid"/"Same".
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from actors.akida.frame import FrameLayer, frame_forward, input_frame

__all__ = ["akida_version", "build_model", "MapReport", "map_on_akd1000", "check_program", "conv_geometry",
           "inexpressible", "engine_input", "engine_output", "same_pads"]

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


def conv_geometry(info: dict[str, Any], kernel: np.ndarray) -> dict[str, Any]:
    """A program's Conv2d (``meta["conv"]`` entry + integer kernel) as :class:`FrameLayer` ``conv``.

    ``same`` says which akida padding realises the NIR padding: a symmetric ``k // 2`` (odd kernels) is
    akida's "Same" (which the emulator then runs with akida's own :func:`same_pads`), 0 is "Valid"; any
    other padding, a dilation or groups is ``None``.
    """
    kh, kw = (int(v) for v in info["kernel"])
    pad = info["padding"]
    stride = tuple(int(v) for v in info["stride"])
    if isinstance(pad, str):
        same: bool | None = {"valid": False, "same": True}.get(pad.lower())
    else:
        p = tuple(int(v) for v in pad)
        # a 1x1 kernel's 0 padding is both; "Same" is the one akida's Convolutional maps
        same = True if (kh % 2, kw % 2) == (1, 1) and p == (kh // 2, kw // 2) else False if p == (0, 0) else None
    if tuple(int(v) for v in info["dilation"]) != (1, 1) or int(info["groups"]) != 1:
        same = None
    return {"kernel": np.asarray(kernel), "shape": (int(info["c_in"]), int(info["h"]), int(info["w"])),
            "stride": stride, "same": same}


def same_pads(n: int, k: int, s: int) -> tuple[int, int]:
    """akida's zero "Same" padding (before, after) of one axis: TensorFlow's rule, ``ceil(n/s)`` outputs and
    the odd pixel after the data. Measured on akida 2.19.3 ``Convolutional``: a stride-2 layer on an even
    width matches this and not a symmetric ``k//2`` (NIR/torch) padding."""
    total = max(k - (s if n % s == 0 else n % s), 0)
    return total // 2, total - total // 2


def _lname(i: int, lay: FrameLayer) -> str:
    return f"cv{i}" if lay.conv is not None else f"fc{i}"


def inexpressible(layers: list[FrameLayer]) -> str | None:
    """Why the layers cannot be built as v1 akida layers (None when they can)."""
    for i, lay in enumerate(layers):
        if lay.conv is None:
            continue
        if i > 0 and layers[i - 1].conv is None:
            return f"layer {lay.name}: a Convolutional layer after a FullyConnected one has no spatial input"
        if lay.conv["same"] is None:
            return (f"layer {lay.name}: padding/dilation/groups other than akida's 'Valid' (0) or 'Same' "
                    "(symmetric k//2 in NIR) zero padding with dilation 1 and groups 1")
        n_pos = lay.weights.shape[0] // lay.conv["kernel"].shape[0]
        for what in ("threshold", "step16"):
            v = np.asarray(getattr(lay, what)).reshape(-1, n_pos)
            if lay.activation and not (v == v[:, :1]).all():
                return f"layer {lay.name}: the {what} varies over positions of a filter; akida holds one per filter"
    return None


def build_model(n_in: int, input_bits: int, layers: list[FrameLayer]) -> Any:
    """An ``akida.Model`` (v1 layers) with the program's integer variables set.

    Dense layers are ``FullyConnected``; Conv2d layers are ``InputConvolutional`` (first layer, a
    cross-correlation: NIR's kernel as is) or ``Convolutional`` (a true convolution: the kernel is flipped),
    per the layer docstrings of akida 2.19.3 (``akida.InputConvolutional``, ``akida.Convolutional``). Akida's
    spatial axes are (x=width, y=height, channels), its weights (kx, ky, C, F); a FullyConnected after a
    conv takes the channel-major (c, h, w) flattening the emulator uses.
    """
    why = inexpressible(layers)
    if why is not None:
        raise ValueError(f"akida v1 layers cannot express {why}")
    ak = _akida()
    m = ak.Model()
    if layers[0].conv is None:
        m.add(ak.InputData((1, 1, int(n_in)), input_bits=int(input_bits)))
    for i, lay in enumerate(layers):
        name = _lname(i, lay)
        common = {"name": name, "weights_bits": int(lay.weight_bits), "act_bits": int(lay.act_bits),
                  "activation": bool(lay.activation)}
        cv = lay.conv
        if cv is None:
            n_out = int(lay.weights.shape[0])
            m.add(ak.FullyConnected(n_out, **common))
            w = np.ascontiguousarray(lay.weights.T.astype(np.int8)).reshape(1, 1, -1, n_out)
        else:
            kern = np.asarray(cv["kernel"], dtype=np.int64)
            n_out = int(kern.shape[0])
            c, h, wd = cv["shape"]
            geo = {"padding": ak.Padding.Same if cv["same"] else ak.Padding.Valid,
                   "kernel_stride": (int(cv["stride"][1]), int(cv["stride"][0]))}
            ks = (int(kern.shape[3]), int(kern.shape[2]))
            w = kern.transpose(3, 2, 1, 0)
            if i == 0:
                m.add(ak.InputConvolutional((wd, h, c), ks, n_out, **geo, **common))
            else:
                m.add(ak.Convolutional(ks, n_out, **geo, **common))
                w = w[::-1, ::-1]
            w = np.ascontiguousarray(w).astype(np.int8)
        layer = m.get_layer(name)
        layer.set_variable("weights", w)
        if lay.activation:
            per = np.asarray(lay.threshold).reshape(n_out, -1)[:, 0]
            step = np.asarray(lay.act_step).reshape(n_out, -1)[:, 0]
            layer.set_variable("threshold", per.astype(np.int32))
            layer.set_variable("act_step", step.astype(np.float32))
    return m


def engine_input(frame: np.ndarray, layers: list[FrameLayer]) -> np.ndarray:
    """The emulator's integer input frame ``[B, n]`` in the engine's layout (uint8 ``[B, x, y, c]``)."""
    if layers[0].conv is None:
        return frame.astype(np.uint8).reshape(len(frame), 1, 1, -1)
    c, h, w = layers[0].conv["shape"]
    return np.ascontiguousarray(frame.reshape(len(frame), c, h, w).transpose(0, 3, 2, 1)).astype(np.uint8)


def engine_output(y: Any, conv: bool) -> np.ndarray:
    """An engine output ``[B, x, y, F]`` back to the emulator's channel-major ``[B, F*h*w]`` (int64)."""
    y = np.asarray(y).astype(np.int64)
    return (y.transpose(0, 3, 2, 1) if conv else y).reshape(len(y), -1)


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
    hrc = [dev.mesh.hrc] if getattr(dev.mesh, "hrc", None) is not None else []  # the input conv's own unit
    avail = Counter(_type_name(t) for np_info in [*dev.mesh.nps, *hrc] for t in np_info.types)
    try:
        m = build_model(n_in, input_bits, layers)
        m.map(dev, hw_only=True)
    except Exception as exc:  # the engine's refusal (RuntimeError/ValueError) is the fit verdict's text
        return MapReport(ok=False, error=str(exc).strip(), nps_available=dict(avail), device=str(dev.desc))
    try:
        per_layer = [(lay.name, [_type_name(n.type) for n in m.get_layer(_lname(i, lay)).mapping.nps])
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

    Compared: every layer's integer outputs (activations; the last layer's potentials or activations) of
    every sample (``per_layer``; the first layer that differs is the reported mismatch), then the runtime's
    returned ``counts`` against the same readout computed from the engine's outputs.
    """
    ver = akida_version()
    if ver is None:
        return _unavailable("akida is not installed (pip install akida==2.19.3); no BrainChip reference")
    fb = program.meta.get("fallback")
    if fb is not None:
        nodes = [*fb.get("prefix_nodes", []), *fb.get("tail_nodes", [])]
        return _unavailable(f"hybrid program: nodes {nodes} run on kind 'cpu', which akida cannot express; "
                            "no bit-exact claim is made for it")
    x = np.asarray(spikes, dtype=np.float32)
    if runtime.program is not program:
        runtime.load(program)
    o, steps = program.meta["options"], int(x.shape[1])
    layers = runtime.frame_layers(steps)
    # the engine gets the program's own integer weights (and kernels); the emulator runs its loaded copy
    engine_layers = [replace(lay, weights=np.asarray(program.arrays[f"l{i}.wq"]),
                             conv=None if lay.conv is None else {**lay.conv, "kernel": program.arrays[f"l{i}.kq"]})
                     for i, lay in enumerate(layers)]
    why = inexpressible(engine_layers)
    if why is not None:
        return _unavailable(f"akida v1 layers cannot express {why}; no bit-exact claim is made")
    frame, _ = input_frame(x, o["input_bits"])
    trace = frame_forward(layers, frame)
    inp = engine_input(frame, engine_layers)
    per_layer: list[dict[str, Any]] = []
    for k in range(len(layers)):  # every layer's integer output: the engine model cut after layer k
        out = build_model(frame.shape[1], o["input_bits"], engine_layers[:k + 1]).forward(inp)
        got = engine_output(out, engine_layers[k].conv is not None)
        per_layer.append({"layer": layers[k].name, "outputs": int(got.size),
                          "mismatches": int(np.count_nonzero(got != trace[k][1])), "_ref": got})
    ref = per_layer[-1]["_ref"]
    emu = trace[-1][1]
    bad_layer = next((p for p in per_layer if p["mismatches"]), None)
    if bad_layer is not None:
        k = per_layer.index(bad_layer)
        ref, emu = bad_layer["_ref"], trace[k][1]
    for p in per_layer:
        del p["_ref"]
    n_conv = sum(lay.conv is not None for lay in layers)
    kinds = (f"{n_conv} conv ({'InputConvolutional + ' if layers[0].conv is not None else ''}Convolutional) + "
             f"{len(layers) - n_conv} FullyConnected layer(s)" if n_conv else f"{len(layers)} FullyConnected layer(s)")
    what = (f"{kinds}, weight bits {[lay.weight_bits for lay in layers]}, "
            f"act bits {o['act_bits']}, input bits {o['input_bits']}, "
            f"{'potential' if not layers[-1].activation else 'activation'} readout")
    base = {"samples": int(len(frame)), "outputs_compared": int(per_layer[-1]["outputs"]),
            "reference": f"akida {ver} {ENGINE}", "layers": what, "per_layer": per_layer}
    diff = emu != ref
    if diff.any():
        s, j = (int(v) for v in np.argwhere(diff)[0])
        first = {"sample": s, "output": j, "emulator": int(emu[s, j]), "engine": int(ref[s, j])}
        lname = per_layer[k]["layer"] if bad_layer is not None else layers[-1].name
        return {"status": "mismatch", **base, "max_error": int(np.max(np.abs(emu - ref))),
                "first_mismatch": {**first, "layer": lname}, "mismatches": int(diff.sum()),
                "summary": (f"{int(diff.sum())} of {ref.size} outputs of layer {lname} differ from akida {ver} "
                            f"{ENGINE}; first: sample {s}, output {j}: emulator {first['emulator']}, engine "
                            f"{first['engine']} ({what})")}
    res = runtime.run(x)
    counts_ref = layers[-1].score(ref)
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
