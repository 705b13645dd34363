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

SUPPORTED_LAYERS = ("Linear", "Flatten", "Dropout", "Identity", "Leaky", "Synaptic", "RLeaky")
_PASS_THROUGH = (nn.Flatten, nn.Dropout, nn.Identity)  # identity on flat spike vectors at inference
_NEURONS = (snn.Leaky, snn.Synaptic, snn.RLeaky)


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


def check_layers(net: nn.Module, n_in: int, n_out: int) -> None:
    """Refuse what the exporter cannot write, or sizes that do not fit the data, before training.

    Layers must be pairs of ``Linear`` then a spiking neuron (``Flatten``/``Dropout``/``Identity`` may
    sit anywhere: identity at inference); the first ``Linear`` takes ``n_in`` inputs, the last neuron
    layer has ``n_out`` units."""
    if not isinstance(net, nn.Sequential):
        raise UserModelError("model.module", f"the factory returned {type(net).__name__}, expected a "
                                             "torch.nn.Sequential of torch layers and snntorch neurons")
    width, pending, neurons = n_in, None, 0
    for i, m in enumerate(net):
        if isinstance(m, _PASS_THROUGH):
            continue
        if type(m) is nn.Linear:
            if pending is not None:
                raise _refuse(i, m, f"follows the Linear at layer {pending} without a neuron between; kinds map "
                                    "Linear+neuron pairs")
            if m.in_features != width:
                where = f"the encoded dataset has {width} features" if neurons == 0 else f"the layer before has {width}"
                raise _refuse(i, m, f"takes {m.in_features} inputs but {where}")
            width, pending = m.out_features, i
            continue
        if type(m) in _NEURONS:
            if pending is None:
                raise _refuse(i, m, "does not follow a Linear layer; kinds map Linear+neuron pairs")
            _check_neuron(i, m)
            if type(m) is snn.RLeaky and isinstance(m.recurrent, nn.Linear) and m.recurrent.in_features != width:
                raise _refuse(i, m, f"has linear_features={m.recurrent.in_features} but receives {width}")
            pending, neurons = None, neurons + 1
            continue
        raise _refuse(i, m, f"is not supported; supported layers: {list(SUPPORTED_LAYERS)}")
    if pending is not None:
        raise UserModelError("model.module", f"the Linear at layer {pending} feeds the output without a neuron; "
                                             "the last layer must be a spiking neuron")
    if neurons == 0:
        raise UserModelError("model.module", "the model has no spiking neuron layer")
    if width != n_out:
        raise UserModelError("model.module", f"the model's output size is {width} but the dataset has {n_out} classes")


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


def _lif(m: nn.Module, n: int, dt: float) -> nir.LIF:
    tau = _tau(m.beta, n, dt, "beta")
    return nir.LIF(tau=tau, r=(tau / dt).astype(np.float32), v_leak=np.zeros(n, np.float32),
                   v_threshold=_per_neuron(m.threshold, n), v_reset=np.zeros(n, np.float32))


def export_sequential(model: SequentialSNN, dt: float = DEFAULT_DT,
                      metadata: dict[str, Any] | None = None) -> nir.NIRGraph:
    """Write a type-checked NIR graph for a checked user Sequential (see the module docstring)."""
    check_layers(model.net, model.n_in, model.n_out)
    nodes: dict[str, nir.NIRNode] = {"input": nir.Input(input_type={"input": np.array([model.n_in])})}
    edges: list[tuple[str, str]] = []
    prev, width = "input", model.n_in

    def add(name: str, node: nir.NIRNode) -> None:
        nonlocal prev
        nodes[name] = node
        edges.append((prev, name))
        prev = name

    for i, m in enumerate(model.net):
        if isinstance(m, nn.Flatten):
            add(f"flatten{i}", nir.Flatten(input_type={"input": np.array([width])}, start_dim=0, end_dim=-1))
        elif type(m) is nn.Linear:
            w = m.weight.detach().cpu().numpy().astype(np.float32)
            if m.bias is None:
                add(f"fc{i}", nir.Linear(weight=w))
            else:
                add(f"fc{i}", nir.Affine(weight=w, bias=m.bias.detach().cpu().numpy().astype(np.float32)))
            width = m.out_features
        elif type(m) is snn.Leaky:
            add(f"lif{i}", _lif(m, width, dt))
        elif type(m) is snn.Synaptic:
            tau_mem = _tau(m.beta, width, dt, "beta")
            add(f"cuba{i}", nir.CubaLIF(tau_syn=_tau(m.alpha, width, dt, "alpha"), tau_mem=tau_mem,
                                        r=(tau_mem / dt).astype(np.float32), v_leak=np.zeros(width, np.float32),
                                        v_threshold=_per_neuron(m.threshold, width),
                                        v_reset=np.zeros(width, np.float32), w_in=np.ones(width, np.float32)))
        elif type(m) is snn.RLeaky:
            add(f"rlif{i}", _lif(m, width, dt))
            if isinstance(m.recurrent, nn.Linear):
                wr = m.recurrent.weight.detach().cpu().numpy().astype(np.float32)
                br = (np.zeros(width, np.float32) if m.recurrent.bias is None
                      else m.recurrent.bias.detach().cpu().numpy().astype(np.float32))
            else:  # one-to-one: each neuron's own spike, scaled by V
                wr, br = np.diag(_per_neuron(m.V, width)), np.zeros(width, np.float32)
            nodes[f"rec{i}"] = nir.Affine(weight=wr, bias=br)
            edges += [(prev, f"rec{i}"), (f"rec{i}", prev)]
        # Dropout / Identity: identity at inference, nothing to write
    add("output", nir.Output(output_type={"output": np.array([model.n_out])}))
    meta = {"dt": dt, "reset": "zero", "readout": "spike_count", "producer": "fabric.model.user.export_sequential",
            "factory": model.factory}
    meta.update(metadata or {})
    graph = nir.NIRGraph(nodes=nodes, edges=edges, metadata=meta)
    graph.infer_types()
    return graph


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
