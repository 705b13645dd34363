"""Models from anywhere (issue #15): a pre-trained NIR graph, or a user's snntorch ``nn.Sequential``.

Why the fabric wraps a user factory instead of running the user's own forward: the fabric owns the time
loop (one ``net(x[t])`` per step, hidden state reset per batch with snntorch's ``utils.reset``), the
training loop, seeding and the NIR export, so a user model is trained, exported and checked exactly
like the ``lif_mlp`` template. What the exporter cannot write faithfully is refused before training,
naming the layer, its position and the supported list.

Export conventions are those of :func:`fabric.model.snn.export_nir` (``tau = dt / (1 - beta)``,
``r = tau / dt``, reset to zero); ``Synaptic`` becomes ``CubaLIF`` with ``tau_syn = dt / (1 - alpha)``
and ``w_in = 1`` (the fabric's CubaLIF reference: ``syn <- a syn + w_in I``, ``v <- b v + syn``);
``RLeaky`` becomes a LIF with a recurrent ``Affine`` self-loop, as :mod:`fabric.ir.recurrent` reads it.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import io
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nir
import numpy as np
import snntorch as snn
import torch
from snntorch import utils as snn_utils
from torch import nn

from fabric.model.snn import DEFAULT_DT
from fabric.spec import SpecError

__all__ = [
    "SUPPORTED_LAYERS",
    "SumPool2d",
    "UserModelError",
    "SequentialSNN",
    "load_factory",
    "module_digest",
    "absolute_ref",
    "check_layers",
    "build_user_model",
    "export_sequential",
    "user_model_to_bytes",
    "is_user_checkpoint",
    "user_model_from_bytes",
    "read_nir_source",
    "check_graph_sizes",
]

SUPPORTED_LAYERS = ("Linear", "Flatten", "Dropout", "Identity", "Leaky", "Synaptic", "RLeaky", "Conv2d", "AvgPool2d",
                    "SumPool2d", "Unflatten")
_PASS_THROUGH = (nn.Flatten, nn.Dropout, nn.Identity)  # identity on flat spike vectors at inference
_NEURONS = (snn.Leaky, snn.Synaptic, snn.RLeaky)


def _two(v: Any) -> tuple[int, int]:
    return (int(v[0]), int(v[1])) if isinstance(v, tuple | list) else (int(v), int(v))


class SumPool2d(nn.Module):
    """Sum pooling (NIR's ``SumPool2d``; torch has none): ``AvgPool2d`` times the kernel area. Spikes
    summed over a window keep integer synaptic input, which fixed-point kinds represent exactly."""

    def __init__(self, kernel_size: int | tuple[int, int], stride: int | tuple[int, int] | None = None) -> None:
        super().__init__()
        self.kernel_size, self.stride = kernel_size, stride if stride is not None else kernel_size
        self.padding, self.ceil_mode = 0, False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kh, kw = _two(self.kernel_size)
        return nn.functional.avg_pool2d(x, self.kernel_size, self.stride) * (kh * kw)


class UserModelError(SpecError):
    """A user model (``model.module`` / ``model.nir``) that cannot be used; one line naming the field."""

    def __init__(self, field: str, msg: str) -> None:
        super().__init__([(field, msg)])


# -- the factory ------------------------------------------------------------------------------------
def _split_ref(ref: str) -> tuple[str, str]:
    target, sep, attr = ref.rpartition(":")
    if not sep or not target or not attr.isidentifier():
        raise UserModelError("model.module", f"{ref!r} is not 'path/to/file.py:build' or 'pkg.mod:build'")
    return target, attr


def _is_path(target: str) -> bool:
    return target.endswith(".py") or "/" in target or "\\" in target


def _source_file(ref: str) -> Path:
    """The file that defines the factory (a path, or the module's origin)."""
    target, _ = _split_ref(ref)
    if _is_path(target):
        p = Path(target).expanduser().resolve()
        if not p.is_file():
            raise UserModelError("model.module", f"no such file: {target}")
        return p
    try:
        found = importlib.util.find_spec(target)
    except (ImportError, ValueError) as exc:
        raise UserModelError("model.module", f"{target!r} does not import: {type(exc).__name__}: {exc}") from None
    if found is None or not found.origin or not Path(found.origin).is_file():
        raise UserModelError("model.module", f"{target!r} does not import: no module named {target!r}")
    return Path(found.origin)


def absolute_ref(ref: str) -> str:
    """``ref`` with a relative file path made absolute (for a Ray worker in another directory)."""
    target, attr = _split_ref(ref)
    return f"{_source_file(ref)}:{attr}" if _is_path(target) else ref


def module_digest(ref: str) -> str:
    """sha256 of the factory's source file: part of the train cache key, so editing the file re-trains."""
    return hashlib.sha256(_source_file(ref).read_bytes()).hexdigest()


def load_factory(ref: str) -> Callable[..., Any]:
    """The ``build`` callable of ``"path/to/file.py:build"`` or ``"pkg.mod:build"``."""
    target, attr = _split_ref(ref)
    try:
        if _is_path(target):
            path = _source_file(ref)
            name = "fabric_user_" + hashlib.sha256(str(path).encode()).hexdigest()[:12]
            spec = importlib.util.spec_from_file_location(name, path)
            if spec is None or spec.loader is None:
                raise ImportError(f"cannot load {path}")
            mod = importlib.util.module_from_spec(spec)
            sys.modules[name] = mod
            spec.loader.exec_module(mod)
        else:
            mod = importlib.import_module(target)
    except UserModelError:
        raise
    except Exception as exc:  # whatever the user's module raises on import
        raise UserModelError("model.module", f"{target!r} does not import: {type(exc).__name__}: {exc}") from None
    fn = getattr(mod, attr, None)
    if not callable(fn):
        raise UserModelError("model.module", f"{target!r} has no callable {attr!r}")
    return fn


# -- layer checks (before any training) --------------------------------------------------------------
def _refuse(i: int, m: nn.Module, why: str) -> UserModelError:
    return UserModelError("model.module", f"layer {i} ({type(m).__name__}) {why}")


def _check_neuron(i: int, m: nn.Module) -> None:
    if not getattr(m, "init_hidden", False):
        raise _refuse(i, m, "needs init_hidden=True (the fabric calls the Sequential once per time step)")
    if int(m.reset_mechanism_val) != 1:
        raise _refuse(i, m, f"uses reset_mechanism={m.reset_mechanism!r}; NIR's LIF resets to v_reset: "
                            "build it with reset_mechanism='zero'")
    if type(m) is not snn.Leaky and m.reset_delay:
        # Leaky with a delayed zero reset spikes alike; Synaptic/RLeaky then zero the whole next step
        raise _refuse(i, m, "needs reset_delay=False to match NIR's reset-after-spike")
    if float(m.graded_spikes_factor) != 1.0 or m.inhibition or m.state_quant:
        raise _refuse(i, m, "uses graded spikes, inhibition or state quantization, which NIR does not express")
    if type(m) is snn.RLeaky and m.all_to_all and not isinstance(m.recurrent, nn.Linear):
        raise _refuse(i, m, "has a convolutional recurrent connection; only linear or one-to-one recurrence exports")


def _conv_out(size: int, k: int, s: int, p: int, d: int) -> int:
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


def _conv_shape(i: int, m: nn.Conv2d, shape: tuple[int, ...]) -> tuple[int, int, int]:
    if m.in_channels != shape[0]:
        raise _refuse(i, m, f"takes {m.in_channels} input channels but receives {shape[0]} ({list(shape)})")
    if m.groups != 1 or m.padding_mode != "zeros":
        raise _refuse(i, m, "needs groups=1 and padding_mode='zeros' (what NIR's Conv2d and the kinds map)")
    if isinstance(m.padding, str):
        pad = (0, 0) if m.padding == "valid" else tuple(d * (k - 1) // 2 for k, d in zip(m.kernel_size, m.dilation, strict=True))
        if m.padding == "same" and any(k % 2 == 0 for k in m.kernel_size):
            raise _refuse(i, m, "uses padding='same' with an even kernel (asymmetric padding); give padding as numbers")
    else:
        pad = tuple(m.padding)
    h, w = (_conv_out(shape[1 + a], m.kernel_size[a], m.stride[a], pad[a], m.dilation[a]) for a in range(2))
    if h < 1 or w < 1:
        raise _refuse(i, m, f"kernel {list(m.kernel_size)} does not fit its {shape[1]}x{shape[2]} input")
    return (m.out_channels, h, w)


def _pool_shape(i: int, m: nn.Module, shape: tuple[int, ...]) -> tuple[int, int, int]:
    k, st = _two(m.kernel_size), _two(m.stride or m.kernel_size)
    if any(_two(m.padding)) or m.ceil_mode or getattr(m, "divisor_override", None):
        raise _refuse(i, m, "needs padding=0, ceil_mode=False and no divisor_override (NIR's pooling)")
    h, w = (_conv_out(shape[1 + a], k[a], st[a], 0, 1) for a in range(2))
    if h < 1 or w < 1:
        raise _refuse(i, m, f"kernel {list(k)} does not fit its {shape[1]}x{shape[2]} input")
    return (shape[0], h, w)


def check_layers(net: nn.Module, n_in: int, n_out: int) -> None:
    """Refuse what the exporter cannot write, or sizes that do not fit the data, before training.

    Layers are synapses (``Linear``, ``Conv2d``, ``AvgPool2d``/``SumPool2d``) each group followed by a
    spiking neuron; two ``Linear`` in a row are refused (a pool between a neuron and the next conv or
    linear belongs to that layer's synapses). ``Unflatten`` may only come first (it gives the flat
    encoded features their ``[C, H, W]`` frame shape), ``Flatten``/``Dropout``/``Identity`` anywhere;
    the first synapse takes ``n_in`` inputs, the last neuron layer has ``n_out`` units."""
    if not isinstance(net, nn.Sequential):
        raise UserModelError("model.module", f"the factory returned {type(net).__name__}, expected a "
                                             "torch.nn.Sequential of torch layers and snntorch neurons")
    shape: tuple[int, ...] = (int(n_in),)
    pending, pending_linear, neurons, seen = None, None, 0, False
    for i, m in enumerate(net):
        width = int(np.prod(shape))
        if isinstance(m, nn.Unflatten):
            if seen or int(m.dim) != 1:
                raise _refuse(i, m, "must be the first layer, as nn.Unflatten(1, (C, H, W)) (it shapes the encoded features)")
            new = tuple(int(v) for v in m.unflattened_size)
            if len(new) != 3 or int(np.prod(new)) != width:
                raise _refuse(i, m, f"gives {list(new)} but the encoded dataset has {width} features; need [C, H, W] "
                                    f"with C*H*W = {width}")
            shape = new
            continue
        seen = True
        if isinstance(m, nn.Flatten):
            if int(m.start_dim) != 1 or int(m.end_dim) != -1:
                raise _refuse(i, m, "must flatten everything but the batch (start_dim=1, end_dim=-1)")
            shape = (width,)
            continue
        if isinstance(m, _PASS_THROUGH):
            continue
        if isinstance(m, nn.MaxPool2d):
            raise _refuse(i, m, "is not supported by any kind (NIR has no max-pool node and no kind's neurons take a "
                                f"max); use AvgPool2d or fabric.model.user.SumPool2d; supported layers: {list(SUPPORTED_LAYERS)}")
        if type(m) is nn.Linear:
            if pending_linear is not None:
                raise _refuse(i, m, f"follows the Linear at layer {pending_linear} without a neuron between; kinds map "
                                    "Linear+neuron pairs")
            if len(shape) != 1:
                raise _refuse(i, m, f"receives a {list(shape)} signal; put nn.Flatten() before it")
            if m.in_features != width:
                where = f"the encoded dataset has {width} features" if neurons == 0 else f"the layer before has {width}"
                raise _refuse(i, m, f"takes {m.in_features} inputs but {where}")
            shape, pending, pending_linear = (m.out_features,), i, i
            continue
        if type(m) in (nn.Conv2d, nn.AvgPool2d, SumPool2d):
            if len(shape) != 3:
                raise _refuse(i, m, f"needs a [C, H, W] input but receives {list(shape)}; start the model with "
                                    "nn.Unflatten(1, (C, H, W))")
            shape = _conv_shape(i, m, shape) if type(m) is nn.Conv2d else _pool_shape(i, m, shape)
            pending = i if pending is None else pending
            continue
        if type(m) in _NEURONS:
            if pending is None:
                raise _refuse(i, m, "does not follow a Linear layer; kinds map Linear+neuron pairs")
            _check_neuron(i, m)
            if type(m) is not snn.Leaky and len(shape) != 1:
                raise _refuse(i, m, f"receives a {list(shape)} signal; Synaptic/RLeaky export on flat layers only "
                                    "(use Leaky after Conv2d)")
            if type(m) is snn.RLeaky and isinstance(m.recurrent, nn.Linear) and m.recurrent.in_features != width:
                raise _refuse(i, m, f"has linear_features={m.recurrent.in_features} but receives {width}")
            pending, pending_linear, neurons = None, None, neurons + 1
            continue
        raise _refuse(i, m, f"is not supported; supported layers: {list(SUPPORTED_LAYERS)}")
    if pending is not None:
        raise UserModelError("model.module", f"the {type(net[pending]).__name__} at layer {pending} feeds the output "
                                             "without a neuron; the last layer must be a spiking neuron")
    if neurons == 0:
        raise UserModelError("model.module", "the model has no spiking neuron layer")
    if len(shape) != 1:
        raise UserModelError("model.module", f"the model's output is a {list(shape)} signal; end with "
                                             "nn.Flatten(), nn.Linear(..., n_classes) and a neuron")
    if shape[0] != n_out:
        raise UserModelError("model.module", f"the model's output size is {shape[0]} but the dataset has {n_out} classes")


# -- the time loop ------------------------------------------------------------------------------------
class SequentialSNN(nn.Module):
    """A user's ``nn.Sequential`` run the fabric's way: ``[T, B, F]`` in, (spikes, membrane) out, the
    same contract as :class:`fabric.model.snn.LifMLP`; state is reset at the start of each call."""

    def __init__(self, net: nn.Sequential, *, factory: str, params: dict[str, Any], n_in: int, n_out: int) -> None:
        super().__init__()
        self.net = net
        self.factory, self.params, self.n_in, self.n_out = factory, dict(params), int(n_in), int(n_out)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        snn_utils.reset(self.net)
        spk_rec, mem_rec = [], []
        for t in range(x.shape[0]):
            out = self.net(x[t])
            spk, mem = (out[0], out[-1]) if isinstance(out, tuple) else (out, torch.zeros_like(out))
            spk_rec.append(spk)
            mem_rec.append(mem)
        return torch.stack(spk_rec), torch.stack(mem_rec)


def build_user_model(ref: str, params: dict[str, Any], n_in: int, n_out: int, seed: int) -> SequentialSNN:
    """Call ``build((n_in,), n_out, **params)`` (seeded) and check what it returns (sizes, layers)."""
    factory = load_factory(ref)
    torch.manual_seed(seed)
    try:
        net = factory((int(n_in),), int(n_out), **dict(params))
    except Exception as exc:  # the user's factory: show its own message
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise UserModelError("model.module", f"{ref} raised {type(exc).__name__}: {msg}") from None
    check_layers(net, n_in, n_out)
    return SequentialSNN(net, factory=ref, params=params, n_in=n_in, n_out=n_out)


# -- NIR export -----------------------------------------------------------------------------------------
def _per_neuron(value: Any, n: int) -> np.ndarray:
    return np.broadcast_to(torch.as_tensor(value).detach().cpu().numpy().astype(np.float32).reshape(-1), (n,)).copy()


def _tau(decay: Any, n: int, dt: float, what: str) -> np.ndarray:
    d = np.clip(_per_neuron(decay, n), 0.0, 1.0)  # snntorch clamps beta/alpha to [0, 1] the same way
    if np.any(d >= 1.0):
        raise ValueError(f"{what} = 1 (no leak) has no LIF time constant")
    return (dt / (1.0 - d)).astype(np.float32)


def _lif(m: nn.Module, n: int, dt: float, shape: tuple[int, ...] | None = None) -> nir.LIF:
    shape = shape or (n,)
    tau = _tau(m.beta, n, dt, "beta")
    return nir.LIF(tau=tau.reshape(shape), r=(tau / dt).astype(np.float32).reshape(shape),
                   v_leak=np.zeros(shape, np.float32), v_threshold=_per_neuron(m.threshold, n).reshape(shape),
                   v_reset=np.zeros(shape, np.float32))


def _np(t: torch.Tensor | None) -> np.ndarray | None:
    return None if t is None else t.detach().cpu().numpy().astype(np.float32)


def export_sequential(model: SequentialSNN, dt: float = DEFAULT_DT,
                      metadata: dict[str, Any] | None = None) -> nir.NIRGraph:
    """Write a type-checked NIR graph for a checked user Sequential (see the module docstring).

    Conv/pool layers keep their ``[C, H, W]`` types (``Unflatten`` first gives the Input node its frame
    shape), so NIR type inference checks every spatial size."""
    check_layers(model.net, model.n_in, model.n_out)
    first = model.net[0] if len(model.net) else None
    shape: tuple[int, ...] = (tuple(int(v) for v in first.unflattened_size) if isinstance(first, nn.Unflatten)
                              else (model.n_in,))
    nodes: dict[str, nir.NIRNode] = {"input": nir.Input(input_type={"input": np.array(shape)})}
    edges: list[tuple[str, str]] = []
    prev = "input"

    def add(name: str, node: nir.NIRNode) -> None:
        nonlocal prev
        nodes[name] = node
        edges.append((prev, name))
        prev = name

    for i, m in enumerate(model.net):
        width = int(np.prod(shape))
        if isinstance(m, nn.Flatten):
            add(f"flatten{i}", nir.Flatten(input_type={"input": np.array(shape)}, start_dim=0, end_dim=-1))
            shape = (width,)
        elif type(m) is nn.Linear:
            w = _np(m.weight)
            add(f"fc{i}", nir.Linear(weight=w) if m.bias is None else nir.Affine(weight=w, bias=_np(m.bias)))
            shape = (m.out_features,)
        elif type(m) is nn.Conv2d:
            out = _conv_shape(i, m, shape)
            pad = m.padding if isinstance(m.padding, tuple) else _conv_pad(m)
            bias = _np(m.bias) if m.bias is not None else np.zeros(m.out_channels, np.float32)
            add(f"conv{i}", nir.Conv2d(input_shape=(shape[1], shape[2]), weight=_np(m.weight), stride=tuple(m.stride),
                                       padding=tuple(int(v) for v in pad), dilation=tuple(m.dilation), groups=1, bias=bias))
            shape = out
        elif type(m) in (nn.AvgPool2d, SumPool2d):
            out = _pool_shape(i, m, shape)
            cls = nir.AvgPool2d if type(m) is nn.AvgPool2d else nir.SumPool2d
            add(f"pool{i}", cls(kernel_size=np.array(_two(m.kernel_size)), stride=np.array(_two(m.stride or m.kernel_size)),
                                padding=np.array([0, 0])))
            shape = out
        elif type(m) is snn.Leaky:
            add(f"lif{i}", _lif(m, width, dt, shape))
        elif type(m) is snn.Synaptic:
            tau_mem = _tau(m.beta, width, dt, "beta")
            add(f"cuba{i}", nir.CubaLIF(tau_syn=_tau(m.alpha, width, dt, "alpha"), tau_mem=tau_mem,
                                        r=(tau_mem / dt).astype(np.float32), v_leak=np.zeros(width, np.float32),
                                        v_threshold=_per_neuron(m.threshold, width),
                                        v_reset=np.zeros(width, np.float32), w_in=np.ones(width, np.float32)))
        elif type(m) is snn.RLeaky:
            add(f"rlif{i}", _lif(m, width, dt))
            if isinstance(m.recurrent, nn.Linear):
                wr = _np(m.recurrent.weight)
                br = np.zeros(width, np.float32) if m.recurrent.bias is None else _np(m.recurrent.bias)
            else:  # one-to-one: each neuron's own spike, scaled by V
                wr, br = np.diag(_per_neuron(m.V, width)), np.zeros(width, np.float32)
            nodes[f"rec{i}"] = nir.Affine(weight=wr, bias=br)
            edges += [(prev, f"rec{i}"), (f"rec{i}", prev)]
        # Unflatten (the Input's shape), Dropout / Identity: identity at inference, nothing to write
    add("output", nir.Output(output_type={"output": np.array([model.n_out])}))
    meta = {"dt": dt, "reset": "zero", "readout": "spike_count", "producer": "fabric.model.user.export_sequential",
            "factory": model.factory}
    meta.update(metadata or {})
    graph = nir.NIRGraph(nodes=nodes, edges=edges, metadata=meta)
    graph.infer_types()
    return graph


def _conv_pad(m: nn.Conv2d) -> tuple[int, int]:
    if m.padding == "valid":
        return (0, 0)
    return tuple(d * (k - 1) // 2 for k, d in zip(m.kernel_size, m.dilation, strict=True))  # type: ignore[return-value]


# -- checkpoints --------------------------------------------------------------------------------------
def user_model_to_bytes(model: SequentialSNN, **extra: Any) -> bytes:
    """A user model artifact: the factory reference, its params, the sizes, the source file's digest
    and the state dict (loading re-runs the factory; no pickled code is stored)."""
    buf = io.BytesIO()
    torch.save({"factory": model.factory, "params": model.params, "n_in": model.n_in, "n_out": model.n_out,
                "module_sha256": module_digest(model.factory), "state_dict": model.state_dict(), **extra}, buf)
    return buf.getvalue()


def is_user_checkpoint(ck: dict[str, Any]) -> bool:
    return "factory" in ck


def user_model_from_bytes(data: bytes, seed: int = 0) -> SequentialSNN:
    """Rebuild a user model artifact with its factory and load its weights (eval mode)."""
    ck = torch.load(io.BytesIO(data), weights_only=True)
    model = build_user_model(ck["factory"], ck["params"], ck["n_in"], ck["n_out"], seed)
    model.load_state_dict(ck["state_dict"])
    return model.eval()


# -- pre-trained NIR ----------------------------------------------------------------------------------
def read_nir_source(source: str, registry: Any | None = None) -> bytes:
    """The bytes of ``model.nir``: a local file, an fsspec URL, or a registry artifact id/prefix of kind
    ``nir``; checked with ``nir.read`` + type inference (one line naming ``model.nir`` if that fails)."""
    from fabric.flow.codecs import nir_from_bytes

    p = Path(source).expanduser()
    try:
        if p.is_file():
            data = p.read_bytes()
        elif "://" in source:
            import fsspec

            with fsspec.open(source, "rb") as f:
                data = f.read()
        elif registry is not None and len(source) >= 6 and all(c in "0123456789abcdef" for c in source.lower()):
            rec = registry.record(source)
            if rec.kind != "nir":
                raise UserModelError("model.nir", f"artifact {rec.id[:12]} is a {rec.kind!r} artifact, not 'nir'")
            data = registry.get(rec.id)
        else:
            raise UserModelError("model.nir", f"no such file, URL or nir artifact: {source}")
    except UserModelError:
        raise
    except Exception as exc:
        msg = (str(exc).strip().splitlines() or [""])[0]
        raise UserModelError("model.nir", f"cannot read {source}: {type(exc).__name__}: {msg}") from None
    try:
        nir_from_bytes(data)
    except Exception as exc:
        msg = (str(exc).strip().splitlines() or [""])[0]
        raise UserModelError("model.nir", f"{source} fails nir.read/type inference: {type(exc).__name__}: {msg}") from None
    return data


def _size(types: dict[str, Any]) -> int | None:
    shapes = [np.asarray(v).astype(int) for v in (types or {}).values()]
    return int(np.prod(shapes[0])) if len(shapes) == 1 and shapes[0].size else None


def check_graph_sizes(graph: nir.NIRGraph, n_in: int, n_out: int, source: str = "model.nir") -> None:
    """The graph's Input size must equal the encoded features and its Output size the class count."""
    ins = [n for n in graph.nodes.values() if isinstance(n, nir.Input)]
    outs = [n for n in graph.nodes.values() if isinstance(n, nir.Output)]
    if len(ins) != 1 or len(outs) != 1:
        raise UserModelError(source, f"the graph needs one Input and one Output node, has {len(ins)} and {len(outs)}")
    gi, go = _size(ins[0].input_type), _size(outs[0].output_type)
    if gi != n_in:
        raise UserModelError(source, f"the graph's input size is {gi} but the encoded dataset has {n_in} features")
    if go != n_out:
        raise UserModelError(source, f"the graph's output size is {go} but the dataset has {n_out} classes")
