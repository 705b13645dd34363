"""``akida`` kind: BrainChip AKD1000 (Akida 1.0 IP), emulated.

What is modelled, and why this way. Akida 1.0 is a frame-based, event-driven accelerator for quantized
networks converted from ANNs (BrainChip CNN2SNN/QuantizeML): one inference takes one integer input
frame; every non-zero activation is an event; a layer integrates events x integer weights into an
integer potential and emits a quantized activation (a threshold and a step, 1/2/4 bits); the last
layer may return its raw int32 potentials. There is no membrane state across frames and no leak.

A spiking NIR graph is therefore mapped by *rate* (the CNN2SNN view of an SNN):

* the input frame is the per-channel spike count over the window of ``T`` steps, quantized to
  ``input_bits`` levels (``L = 2^bits - 1``, one level = ``max(1, T/L)`` spikes);
* weights are quantized symmetrically to ``weight_bits`` (per output neuron for hidden layers, whose
  scale folds into that neuron's threshold; per layer for a potential readout so potentials compare);
* a LIF layer's spike count is approximated by the threshold-linear rate of a LIF with reset to zero,
  ``n ~ (g * sum_t I_t + T * leak - T * thr * (1 - beta)) / thr`` clipped to ``[0, T]``, realised
  as Akida's v1 activation ``a = clip(ceil((p - th) / step), 0, L)`` (:mod:`actors.akida.frame`) with
  integer threshold ``th`` (shifted by one step so the ceil realises the rate map's floor) and
  ``act_step`` floored to 1/16, programmed for the frame's window length (one level = T/L spikes);
* the program is checked bit for bit against BrainChip's ``akida.Model.forward`` by ``reference_check``
  (:mod:`actors.akida.reference`) and fit-checked by BrainChip's mapper on a virtual AKD1000 as well as
  by the emulator's own limits (a program must pass both);
* the readout (``readout="potential"``, default) is the last layer's potential de-biased by its
  threshold, ``(p - th) / step`` (a score in spike-count units, unclipped); ``"activation"`` returns
  the quantized activation in spike-count units instead.

Supported: Dense (Affine/Linear), Conv2d (the kernel quantized per filter, then run as its exact dense
Toeplitz matrix, checked against the InputConv2D/Conv2D limits and by BrainChip's mapper; NIR's symmetric
``k//2`` padding runs as akida's "Same", TensorFlow's rule, which puts the odd pixel of a strided layer
on an even size after the data), LIF and IF neurons. Not supported: CubaLIF (no synaptic state), LI, and
recurrence (refused in the fit report, naming ``fallback='hybrid'``, which runs the recurrent layers
on the host ``cpu`` kind and the feed-forward rest on Akida; the run is reported as hybrid). Energy: static board floor x device time, dynamic per synaptic
event op; device time per frame from a published per-sample latency and a derived op throughput.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import nir
import numpy as np
import torch

from actors.akida.frame import (
    INT32_MAX,
    INT32_MIN,
    STEP16_MAX,
    FrameLayer,
    frame_forward,
    input_frame,
    v1_activation,
)
from actors.akida.reference import (
    akida_version,
    check_program,
    conv_geometry,
    inexpressible,
    map_on_akd1000,
    same_pads,
)
from actors.base.common import arrays_to_layers, layers_to_arrays
from actors.base.emulated import DeviceRun, EmulatedRuntime, raise_if_unfit, rate_to_raster
from actors.base.energy import DeviceConstants, banded, load_constants, modelled_energy
from fabric.ir.lowering import (
    DEFAULT_HANDLERS,
    NEURON_HANDLERS,
    SYNAPSE_HANDLERS,
    GraphStructureError,
    Handler,
    LoweringContext,
    merge_handlers,
)
from fabric.ir.recurrent import lower_recurrent
from fabric.kinds import Capabilities
from fabric.records import FitReport, Program

__all__ = ["AkidaRuntime", "conv2d_to_dense", "quantize_weights", "ConvInfo"]


@dataclass(kw_only=True)
class ConvInfo:
    """Geometry of a lowered Conv2d, kept for the Akida conv limits."""

    name: str
    c_in: int
    h: int
    w: int
    c_out: int
    h_out: int
    w_out: int
    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: Any
    dilation: tuple[int, int]
    groups: int


def _pair(v: Any) -> tuple[int, int]:
    a = np.asarray(v).reshape(-1).astype(int)
    return (int(a[0]), int(a[-1]))


def conv2d_to_dense(name: str, node: nir.Conv2d) -> tuple[np.ndarray, np.ndarray, ConvInfo]:
    """Exact dense equivalent ``[C_out*H'*W', C_in*H*W]`` of a NIR Conv2d (channel-major flattening).

    Built by convolving the identity basis, so padding/stride/dilation/groups follow torch exactly.
    """
    if node.input_shape is None:
        raise GraphStructureError(f"Conv2d {name!r} has no input_shape; NIR needs it to fix the output shape")
    h, w = _pair(node.input_shape)
    weight = np.asarray(node.weight, dtype=np.float64)
    c_out, cg, kh, kw = weight.shape
    groups = int(node.groups)
    c_in = cg * groups
    stride, dilation = _pair(node.stride), _pair(node.dilation)
    padding = node.padding if isinstance(node.padding, str) else _pair(node.padding)
    n_in = c_in * h * w
    eye = torch.eye(n_in, dtype=torch.float64).reshape(n_in, c_in, h, w)
    out = torch.nn.functional.conv2d(eye, torch.as_tensor(weight), None, stride=stride, padding=padding,
                                     dilation=dilation, groups=groups)
    _, _, h_out, w_out = out.shape
    dense = out.reshape(n_in, -1).T.numpy().copy()
    bias = np.repeat(np.asarray(node.bias, dtype=np.float64).reshape(-1), h_out * w_out)
    info = ConvInfo(name=name, c_in=c_in, h=h, w=w, c_out=c_out, h_out=int(h_out), w_out=int(w_out),
                    kernel=(kh, kw), stride=stride, padding=padding, dilation=dilation, groups=groups)
    return dense, bias, info


def akida_same_pads(info: ConvInfo) -> tuple[tuple[int, int], tuple[int, int]] | None:
    """((top, bottom), (left, right)) akida's "Same" padding uses for a Conv2d whose NIR padding is the
    symmetric ``k // 2`` (None for any other padding, which keeps NIR's own)."""
    kh, kw = info.kernel
    sym = info.padding == "same" or (not isinstance(info.padding, str) and (kh % 2, kw % 2) == (1, 1)
                                       and tuple(info.padding) == (kh // 2, kw // 2))
    if not sym:
        return None
    return same_pads(info.h, kh, info.stride[0]), same_pads(info.w, kw, info.stride[1])


def _kernel_to_dense(kernel: np.ndarray, info: ConvInfo) -> np.ndarray:
    """The dense Toeplitz matrix of ``kernel`` ``[F, C/groups, kh, kw]`` on ``info``'s geometry, with akida's
    "Same" padding where it stands for NIR's symmetric ``k // 2`` (exact for integer kernels)."""
    n_in = info.c_in * info.h * info.w
    eye = torch.eye(n_in, dtype=torch.float64).reshape(n_in, info.c_in, info.h, info.w)
    pads, padding = akida_same_pads(info), info.padding
    if pads is not None:
        (top, bottom), (left, right) = pads
        eye, padding = torch.nn.functional.pad(eye, (left, right, top, bottom)), 0
    out = torch.nn.functional.conv2d(eye, torch.as_tensor(np.asarray(kernel, dtype=np.float64)), None,
                                     stride=info.stride, padding=padding, dilation=info.dilation,
                                     groups=info.groups)
    if tuple(out.shape[2:]) != (info.h_out, info.w_out):
        raise GraphStructureError(f"Conv2d {info.name!r}: akida 'Same' padding gives {tuple(out.shape[2:])} "
                                  f"outputs, NIR {(info.h_out, info.w_out)}")
    return out.reshape(n_in, -1).T.numpy().copy()


def _conv_handler(infos: dict[str, ConvInfo], kernels: dict[str, np.ndarray] | None = None) -> Handler:
    def handler(name: str, node: nir.Conv2d, ctx: LoweringContext) -> None:
        if ctx.pending is not None:
            raise GraphStructureError(f"two synapse nodes in a row ({ctx.pending[0]!r}, {name!r})")
        dense, bias, info = conv2d_to_dense(name, node)
        infos[name] = info
        if kernels is not None:
            kernels[name] = np.asarray(node.weight, dtype=np.float64)
        ctx.pending = (name, dense, bias)

    return handler


def quantize_weights(w: np.ndarray, bits: int, per_row: bool) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric integer weights and their scale(s): ``w ~ q * scale`` (``scale`` is ``[n_out]``).

    ``bits >= 2``: ``q`` in ``[-(2^(bits-1)-1), 2^(bits-1)-1]`` with ``scale = max|w| / qmax``.
    ``bits == 1``: ``q`` in ``{0, 1}`` (Akida's 1-bit weights are unsigned: ``akida.FullyConnected``
    refuses -1), ``q = w > 0`` with ``scale`` = the mean positive weight; negative weights are lost.
    """
    w = np.asarray(w, dtype=np.float64)
    axis = 1 if per_row else None
    if bits == 1:
        pos = np.where(w > 0, w, 0.0)
        n_pos = np.count_nonzero(w > 0, axis=axis, keepdims=True) if per_row else np.array([[np.count_nonzero(w > 0)]])
        total = np.sum(pos, axis=axis, keepdims=True) if per_row else np.array([[np.sum(pos)]])
        scale = total / np.maximum(n_pos, 1)
        q = (w > 0).astype(np.int8)
    else:
        qmax = 2 ** (bits - 1) - 1
        scale = (np.max(np.abs(w), axis=axis, keepdims=True) if per_row else np.array([[np.max(np.abs(w))]])) / qmax
        scale = np.where(scale > 0, scale, 1.0)
        q = np.clip(np.rint(w / scale), -qmax, qmax).astype(np.int8)
    scale = np.where(scale > 0, scale, 1.0)
    return q, np.broadcast_to(scale.reshape(-1, 1), (w.shape[0], 1)).reshape(-1).copy()


BASE_HANDLERS = merge_handlers(DEFAULT_HANDLERS, SYNAPSE_HANDLERS,
                               {nir.LIF: NEURON_HANDLERS[nir.LIF], nir.IF: NEURON_HANDLERS[nir.IF]})


def _neuron_coeffs(neuron: str, p: dict[str, np.ndarray], dt: float) -> dict[str, np.ndarray]:
    if neuron == "lif":
        return {"beta": 1 - dt / p["tau"], "gain": dt / p["tau"] * p["r"], "leak": dt / p["tau"] * p["v_leak"],
                "thr": p["v_threshold"]}
    return {"beta": np.ones_like(p["r"]), "gain": p["r"], "leak": np.zeros_like(p["r"]), "thr": p["v_threshold"]}


class AkidaRuntime(EmulatedRuntime):
    kind: ClassVar[str] = "akida"
    capabilities: ClassVar[Capabilities] = Capabilities(
        weight_bits=max(load_constants("akida").limits["dense_weight_bits"]),
        weight_bits_source="actors/akida/constants.yaml limits.dense_weight_bits (Akida 1.0 Dense layers: 1, 2 or 4 bits)",
        reference="akida 2.19.3 Model.forward (bit-exact)", time_mode="frame")
    handlers: ClassVar[dict[type, Handler]] = merge_handlers(BASE_HANDLERS, {nir.Conv2d: _conv_handler({})})
    options_doc: ClassVar[dict[str, str]] = {
        "weight_bits": "1|2|4 (Dense and Conv2D weights; default 4); 8 only on a first InputConv2D layer",
        "input_weight_bits": "weight bits of the first layer (default: 8 for a first Conv2d, else weight_bits)",
        "act_bits": "1|2|4 activation bits (default 4)",
        "input_bits": "model input bits (default 4 for a first Dense layer, 8 for a first Conv2d)",
        "npus": "NPUs available (default 80 = AKD1000; smaller Akida IP configurations have fewer)",
        "readout": "'potential' (default, last layer returns potentials; 'activation' for a single-conv "
                   "network, which akida's mapper maps only with its activation) | 'activation'",
    }
    maps_recurrence: ClassVar[bool] = False
    emulation: ClassVar[str] = (
        "frame-based event-driven integer inference: spike counts over the window -> quantized input frame; "
        "per layer integer potential of events x quantized weights, threshold+step quantized activation "
        "approximating the LIF spike count (rate mapping, no leak state); readout of output potentials"
    )

    def _options(self, options: dict[str, Any], first_is_conv: bool) -> dict[str, Any]:
        o = {"weight_bits": 4, "act_bits": 4, "npus": int(self.constants.limits["npus"]), "readout": "potential"}
        o.update({k: v for k, v in options.items() if not k.startswith("_")})
        o["npus"] = int(o["npus"])
        o.setdefault("input_weight_bits", 8 if first_is_conv else o["weight_bits"])
        o.setdefault("input_bits", 8 if first_is_conv else 4)
        for k in ("weight_bits", "input_weight_bits", "act_bits", "input_bits"):
            if int(o[k]) not in (1, 2, 4, 8):
                raise ValueError(f"akida: option {k} must be one of 1, 2, 4, 8 (Akida bit widths), got {o[k]!r}")
            o[k] = int(o[k])
        if o["readout"] not in ("potential", "activation"):
            raise ValueError(f"akida: readout must be 'potential' or 'activation', got {o['readout']!r}")
        if options.get("_hybrid_head"):
            o["readout"] = "activation"  # a host tail consumes this device's output events
        return o

    def _compile_device(self, graph: nir.NIRGraph, options: dict[str, Any]) -> Program:
        infos: dict[str, ConvInfo] = {}
        kernels: dict[str, np.ndarray] = {}
        handlers = merge_handlers(BASE_HANDLERS, {nir.Conv2d: _conv_handler(infos, kernels)})
        ctx = lower_recurrent(graph, self.kind, handlers)
        layers = ctx.layers
        kinds = ["conv" if lay.name.split("->")[0] in infos else "dense" for lay in layers]
        o = self._options(options, kinds[0] == "conv")
        lim = self.constants.limits
        fit = FitReport(kind=self.kind, notes=list(ctx.notes))
        if kinds == ["conv"] and "readout" not in options and o["readout"] == "potential":
            # akida's mapper maps a first convolutional layer only with its activation enabled, so a one-conv
            # network reads its activations unless the user asked for potentials (then the mapper refuses)
            o["readout"] = "activation"
            fit.notes.append("readout: 'activation' (default for a network whose only layer is its first conv: "
                             "akida's mapper maps that layer only with its activation enabled)")
        n_rec = sum(lay.recurrent is not None for lay in layers)
        fit.add("recurrent layers (Akida 1.0 runs feed-forward frames; compile with fallback='hybrid' to run "
                "them on kind 'cpu')", n_rec, 0, "layers")
        fit.add("activation bits", o["act_bits"], max(lim["activation_bits"]), "bit")
        arrays: dict[str, np.ndarray] = {}
        mapping, total_np, footprint = [], 0, 0
        for i, (lay, kind) in enumerate(zip(layers, kinds, strict=True)):
            scope = f"layer:{lay.name}"
            bits = o["input_weight_bits"] if i == 0 else o["weight_bits"]
            if kind == "conv":
                info = infos[lay.name.split("->")[0]]
                self._check_conv(fit, info, i == 0, bits, o, scope)
                neurons, n_weights = info.c_out, info.c_out * (info.c_in // info.groups) * info.kernel[0] * info.kernel[1]
            else:
                fit.add("Dense input size (WxHxC)", lay.n_in, lim["dense_max_inputs"], "inputs", scope)
                fit.add("Dense weight bits", bits, max(lim["dense_weight_bits"]), "bit", scope)
                if i == 0:
                    fit.add("model input bits for a first Dense layer (8-bit inputs need a first Conv "
                            "layer with 1 or 3 channels)", o["input_bits"], max(lim["dense_input_bits"]), "bit")
                neurons, n_weights = lay.n_out, lay.n_in * lay.n_out
            wbytes = math.ceil(n_weights * bits / 8)
            nps = max(math.ceil(neurons / lim["neurons_per_np"]), math.ceil(wbytes / lim["np_sram_bytes"]), 1)
            total_np += nps
            footprint += wbytes + 4 * lay.n_out
            mapping.append({"layer": lay.name, "type": ("InputConv2D" if i == 0 else "Conv2D") if kind == "conv"
                            else "Dense", "neurons": neurons, "weight_bytes": wbytes, "npus": nps})
            last_potential = i == len(layers) - 1 and o["readout"] == "potential"
            if kind == "conv":
                # the kernel is quantized (one scale per filter, as the chip shares it over positions), then
                # expanded: quantizing the Toeplitz rows instead gave border rows of a padded conv their own
                # scale, which no Convolutional layer can hold
                cname = lay.name.split("->")[0]
                kern = kernels[cname]
                kq, kscale = quantize_weights(kern.reshape(kern.shape[0], -1), bits, per_row=not last_potential)
                arrays[f"l{i}.kq"] = kq.reshape(kern.shape)
                pads = akida_same_pads(infos[cname])
                if pads is not None and any(a != b for a, b in pads):
                    fit.notes.append(f"layer {lay.name}: NIR's symmetric padding {tuple(infos[cname].padding)} runs as "
                                     f"akida 'Same' padding (TensorFlow's rule: (before, after) = {pads} for (H, W)); "
                                     "outputs shift by one pixel against the NIR graph at this stride")
                q = _kernel_to_dense(kq.reshape(kern.shape), infos[cname]).astype(np.int8)
                scale = np.repeat(kscale, infos[cname].h_out * infos[cname].w_out)
            else:
                q, scale = quantize_weights(lay.weight, bits, per_row=not last_potential)
            arrays[f"l{i}.wq"] = q
            arrays[f"l{i}.wscale"] = scale
        fit.add("NPUs", total_np, o["npus"], "NPU")
        fit.notes.append(f"NPU mapping: max(ceil(neurons/{lim['neurons_per_np']}), "
                         f"ceil(weight bytes/{lim['np_sram_bytes']} B)) per layer (documented assumption, "
                         f"see actors/akida/constants.yaml); layers: {[(m['layer'], m['type'], m['npus']) for m in mapping]}")
        fit.notes.append("rate mapping: LIF leak is folded into each neuron's threshold; Akida keeps no "
                         "membrane state across frames")
        self._vendor_fit(fit, layers, arrays, o, {k: asdict(v) for k, v in infos.items()})
        raise_if_unfit(fit)
        base, meta = layers_to_arrays(layers)
        arrays.update({k: v for k, v in base.items() if not k.endswith(".weight")})
        return Program(kind=self.kind, arrays=arrays, fit=fit, meta={
            "layers": meta, "dt": ctx.dt, "n_in": layers[0].n_in, "n_out": layers[-1].n_out,
            "footprint_bytes": int(footprint), "options": o, "mapping": mapping,
            "conv": {k: asdict(v) for k, v in infos.items()},
        })

    def _vendor_fit(self, fit: FitReport, layers: list[Any], arrays: dict[str, np.ndarray], o: dict[str, Any],
                    conv: dict[str, dict[str, Any]]) -> None:
        """BrainChip's mapper on a virtual AKD1000 (``hw_only=True``): its NP counts per type are fit items,
        its program memory a note, its refusal a fit item whose name is the mapper's message. The emulator's
        own limits stay; a program must pass both, so the stricter verdict wins (the note says which)."""
        if akida_version() is None:
            fit.notes.append("vendor mapper not run: akida is not installed (pip install akida==2.19.3)")
            return
        mine_ok = fit.ok
        frame = [FrameLayer(name=lay.name, weights=arrays[f"l{i}.wq"],
                            weight_bits=o["input_weight_bits"] if i == 0 else o["weight_bits"],
                            threshold=np.zeros(lay.n_out, np.int64), step16=np.full(lay.n_out, 16, np.int64),
                            act_bits=o["act_bits"], activation=not (i == len(layers) - 1 and o["readout"] == "potential"),
                            level=1.0, score_threshold=np.zeros(lay.n_out), score_step=np.ones(lay.n_out),
                            conv=None if lay.name.split("->")[0] not in conv
                            else conv_geometry(conv[lay.name.split("->")[0]], arrays[f"l{i}.kq"]))
                 for i, lay in enumerate(layers)]
        why = inexpressible(frame)
        if why is not None:
            fit.notes.append(f"vendor mapper not run: akida v1 layers cannot express {why}")
            return
        rep = map_on_akd1000(layers[0].n_in, o["input_bits"], frame)
        who = f"akida {akida_version()} mapper on {rep.device} (hw_only=True)"
        if rep.ok:
            for t, n in sorted(rep.nps_used.items()):
                fit.add(f"AKD1000 {t} NPs (akida mapper)", n, rep.nps_available.get(t, 0), "NP")
            fit.notes.append(f"{who}: NPs {dict(sorted(rep.nps_used.items()))} of {dict(sorted(rep.nps_available.items()))} "
                             f"(an NP can take several types); program {rep.program_bytes} B, program memory "
                             f"{rep.program_memory} B; layers: {rep.per_layer}")
        else:
            fit.add(f"akida mapper (AKD1000, hw_only=True) refused: {rep.error}", 1, 0, "")
        verdict = ("both accept" if mine_ok and rep.ok else "both refuse" if not mine_ok and not rep.ok
                   else "the akida mapper refuses (stricter than the emulator's limits)" if mine_ok
                   else "the emulator's limits refuse (stricter than the akida mapper)")
        fit.notes.append(f"fit verdict: emulator limits {'ok' if mine_ok else 'refused'}, {who} "
                         f"{'ok' if rep.ok else 'refused'}: {verdict}; the program must pass both")

    # ------------------------------------------------------------------ reference
    def reference_fingerprint(self) -> list[Any]:
        """What the golden check depends on outside the program: the installed akida version."""
        return ["akida", akida_version()]

    def reference_check(self, program: Program, spikes: np.ndarray) -> dict[str, Any]:
        """Emulator vs BrainChip's ``akida.Model.forward`` on ``spikes``: ``status`` bit-exact | mismatch |
        unavailable (hybrid, conv padding akida cannot express, or akida missing), ``summary``, ``samples``, ``max_error``, ``first_mismatch``."""
        return check_program(self, program, spikes)

    def _check_conv(self, fit: FitReport, info: ConvInfo, first: bool, bits: int, o: dict[str, Any], scope: str) -> None:
        lim = self.constants.limits

        def allowed(what: str, value: Any, ok_values: list[Any]) -> None:
            fit.add(f"{what}={value} (allowed {ok_values})", 0 if value in ok_values else 1, 0, "", scope)

        k = info.kernel[0] if info.kernel[0] == info.kernel[1] else info.kernel
        s = info.stride[0] if info.stride[0] == info.stride[1] else info.stride
        allowed("dilation", info.dilation[0] if info.dilation[0] == info.dilation[1] else info.dilation, [1])
        allowed("groups (separable conv not modelled)", info.groups, [1])
        if first:
            allowed("InputConv2D kernel", k, lim["input_conv_kernels"])
            allowed("InputConv2D stride", s, lim["input_conv_strides"])
            allowed("InputConv2D channels", info.c_in, lim["input_conv_channels"])
            allowed("InputConv2D weight bits", bits, lim["input_conv_weight_bits"])
            lo, hi = lim["input_conv_width"]
            fit.add("InputConv2D input width", info.w, hi, "px", scope)
            fit.add(f"InputConv2D input width below {lo}", max(0, lo - info.w), 0, "px", scope)
            fit.add(f"InputConv2D input height below {lim['input_conv_min_height']}",
                    max(0, lim["input_conv_min_height"] - info.h), 0, "px", scope)
            caps = lim["input_conv_max_filters"].get(str(k))
            if caps is not None and info.c_in in (1, 3):
                fit.add(f"InputConv2D filters ({k}x{k}, {info.c_in} ch)", info.c_out, caps[0 if info.c_in == 1 else 1],
                        "filters", scope)
            fit.add("model input bits (InputConv2D takes 8-bit inputs)", o["input_bits"], 8, "bit")
        else:
            allowed("Conv2D kernel", k, lim["conv_kernels"])
            allowed("Conv2D stride", s, lim["conv_strides"])
            allowed("Conv2D weight bits", bits, lim["dense_weight_bits"])

    def _load_device(self, program: Program) -> None:
        a, meta = program.arrays, program.meta
        self._layers = arrays_to_layers({**a, **{f"l{i}.weight": a[f"l{i}.wq"] for i in range(len(meta["layers"]))}},
                                        meta["layers"])
        self._wq = [a[f"l{i}.wq"].astype(np.int64) for i in range(len(meta["layers"]))]
        self._nzcol = [np.count_nonzero(q, axis=0).astype(np.float64) for q in self._wq]
        self._scale = [a[f"l{i}.wscale"] for i in range(len(meta["layers"]))]
        self._coeffs = [_neuron_coeffs(lay.neuron, lay.params, meta["dt"]) for lay in self._layers]

    def frame_layers(self, steps: int) -> list[FrameLayer]:
        """The loaded program as Akida v1 FullyConnected layers for a window of ``steps``: integer
        thresholds and act_steps (the rate mapping of each LIF layer), the emulator's weight copy."""
        assert self.program is not None
        o = self.program.meta["options"]
        s = max(1.0, steps / (2 ** o["input_bits"] - 1))  # spikes per input level of the current layer
        levels = 2 ** o["act_bits"] - 1
        out = []
        for i, lay in enumerate(self._layers):
            cf = self._coeffs[i]
            unit = cf["gain"] * self._scale[i] * s  # float current per potential unit
            with np.errstate(divide="ignore", invalid="ignore"):
                th = (steps * cf["thr"] * (1 - cf["beta"]) - steps * cf["leak"] - steps * cf["gain"] * lay.bias) / unit
                step = cf["thr"] / unit  # potential units per output spike
            last = i == len(self._layers) - 1
            s_out = steps / levels  # spikes per output level; level L = the whole window
            # Akida's act_step is floored to 1/16 and stretched by 2^(4-bits) for 1/2-bit activations
            stretch = 2 ** (4 - o["act_bits"])
            k = np.clip(np.rint(np.nan_to_num(16 * step * s_out / stretch, nan=1.0, posinf=STEP16_MAX)), 1, STEP16_MAX)
            # ceil((p - th - D) / D) == floor((p - th) / D) but at exact multiples: the rate map's floor
            th_int = np.clip(np.rint(np.nan_to_num(th + k * stretch / 16, nan=0.0, posinf=INT32_MAX, neginf=INT32_MIN)),
                             INT32_MIN, INT32_MAX)
            activation = not (last and o["readout"] == "potential")
            info = self.program.meta.get("conv", {}).get(lay.name.split("->")[0])
            kq = self.program.arrays.get(f"l{i}.kq")
            out.append(FrameLayer(
                conv=None if info is None or kq is None else conv_geometry(info, kq),
                name=lay.name, weights=self._wq[i], weight_bits=o["input_weight_bits"] if i == 0 else o["weight_bits"],
                threshold=th_int.astype(np.int64), step16=k.astype(np.int64), act_bits=o["act_bits"],
                activation=activation, level=s_out, score_threshold=np.rint(th), score_step=step))
            s = s_out
        return out

    def _run_device(self, x: np.ndarray) -> DeviceRun:
        assert self.program is not None
        meta, c = self.program.meta, self.constants
        o = meta["options"]
        bsz, steps, _ = x.shape
        a, _ = input_frame(x, o["input_bits"])
        layers = self.frame_layers(steps)
        stats: dict[str, dict[str, float]] = {}
        ops_per_sample = np.zeros(bsz)
        events = float(np.count_nonzero(a))
        out_events = 0
        trace = frame_forward(layers, a)
        for i, (lay, (a_in, y)) in enumerate(zip(layers, trace, strict=True)):
            ops = (a_in != 0).astype(np.float64) @ self._nzcol[i]
            ops_per_sample += ops
            # a potential readout's events: the outputs its activation (not applied) would have fired
            act = y if lay.activation else v1_activation(y, lay.threshold, lay.step16, lay.act_bits)
            n_ev = int(np.count_nonzero(act))
            stats[lay.name] = {"spikes": float(n_ev), "synaptic_ops": float(ops.sum()),
                               "neuron_updates": float(bsz * lay.weights.shape[0])}
            if i == len(layers) - 1:
                out_events = n_ev
            else:
                events += n_ev
        last = layers[-1]
        score = last.score(y)
        host_counts = act * last.level
        syn_ops = float(ops_per_sample.sum())
        # the measurement protocol (docs/measurement.md): latency runs from the sample's first input step
        # to its decision, so the T-step accumulation window (events arrive in real time) is device time
        window = steps * float(meta["dt"])

        def cost(k: DeviceConstants) -> tuple[float, dict[str, float]]:
            t_frame = np.maximum(k.value("t_frame_min_s"), ops_per_sample / k.value("ops_per_s"))
            t_dev = float((window + t_frame).sum())
            return t_dev, modelled_energy(macs=syn_ops, e_mac_j=k.value("e_syn_j"), spikes=events + out_events,
                                          e_spike_j=k.value("e_event_j"), device_time_s=t_dev,
                                          p_static_w=k.value("p_static_w"))

        device_time, energy, bands = banded(cost, c)
        return DeviceRun(
            counts=np.asarray(score, dtype=np.float64), host_raster=rate_to_raster(host_counts, steps), raster=None,
            layer_stats=stats, device_time_s=device_time, energy=energy, spikes_out=out_events, bands=bands,
            sources={
                "energy": f"synaptic event ops x e_syn_j + static floor {c.value('p_static_w'):g} W x device time",
                "device_time": f"per sample: the T-step accumulation window ({window:g} s, events arrive in real "
                               "time) + one frame max(t_frame_min_s, ops/ops_per_s) (docs/measurement.md)",
                "readout": f"{o['readout']}: counts are "
                           + ("output potentials de-biased by threshold, in spike-count units"
                              if o["readout"] == "potential" else "quantized output activations in spike-count units"),
                "arithmetic": "Akida v1 FullyConnected / InputConvolutional / Convolutional integer arithmetic "
                              "(actors/akida/frame.py), checked bit for bit against akida Model.forward by "
                              "reference_check",
            },
        )
