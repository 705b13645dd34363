"""SANA-FE (sanafe 2.2.9, PyPI; https://github.com/SLAM-Lab/SANA-FE) as a second opinion on loihi's energy and time.

Why: the fabric's Loihi energy is a per-event model; SANA-FE is an event-level architecture simulator
whose bundled Loihi description (file ``sanafe/examples/loihi.yaml`` in the sanafe package, numbers from
Davies et al. 2018, DOI 10.1109/MM.2018.112130359) prices the same events. Running the program's own
network on it gives an independent energy and time per inference.

What is built (:func:`build_network`): one SANA-FE neuron per input channel, each on its own
``loihi_inputs[i]`` soma unit (a unit holds one spike train; sharing one silently drops spikes), and one
``loihi_lif`` group per layer with dense connections carrying the program's own effective integer
weights ``w_eff * 2^(weight_exp + 6)`` (Lava's ``a << 6`` scale), threshold ``vth << 6``, bias
``bias_mant << bias_exp``, leak ``(4096 - dv) / 4096`` and hard reset to 0. Cores follow the fabric's
loihi mapping (:func:`actors.loihi.fixed.map_cores`): input channels on the first cores (1024 per core),
then each layer's cores in order, neuron ``j`` of a layer on core ``j // per_core``.

SANA-FE's LIF is ``v = bias + v * leak + input`` (no current decay): it is **not** Loihi CUBA, so its
spikes differ from the bit-exact emulator's and it is no dynamics oracle (Lava is). What must agree is
the accounting: :func:`event_counts` + :func:`energy_from_counts` are the fabric's full-term model
(every term SANA-FE prices: synapse op, neuron access, neuron update, spike out, packet out, packet
in, mesh hops), and on SANA-FE's own spike raster they reproduce SANA-FE's energy
(``ACCOUNTING_TOLERANCE``). On the fabric's own raster the two differ only by the dynamics; that
ratio is reported against ``ENERGY_TOLERANCE``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from actors.base.common import native_stdout_to_stderr
from actors.base.energy import DeviceConstants
from actors.loihi.fixed import CoreMap, FixedLayer, effective_bias, effective_weights

__all__ = [
    "ACCOUNTING_TOLERANCE",
    "ENERGY_TOLERANCE",
    "INPUTS_PER_CORE",
    "Placement",
    "sanafe_version",
    "engine_errors",
    "place",
    "event_counts",
    "energy_from_counts",
    "build_network",
    "simulate",
    "compare",
]

ACCOUNTING_TOLERANCE = 0.02  # fabric model on SANA-FE's raster vs SANA-FE's energy (relative; 19 of 20 random nets exact)
ENERGY_TOLERANCE = 0.5  # fabric model on its own (CUBA) raster vs SANA-FE on its LIF: |ratio - 1| <= this
INPUTS_PER_CORE = 1024  # loihi_inputs[0..1023] per core in sanafe/examples/loihi.yaml
ACT_SHIFT, VTH_SHIFT, DECAY_UNITY = 6, 6, 4096


def _sanafe() -> Any:
    try:
        import sanafe
    except ImportError:
        return None
    return sanafe


_ARCH: dict[int, Any] = {}  # input soma units per core -> parsed architecture


def _arch(inputs_per_core: int) -> Any:
    """``sanafe/examples/loihi.yaml`` with ``loihi_inputs[0..m-1]`` instead of ``[0..1023]`` per core.

    Why: the input somas cost nothing (all their energies and latencies are 0 in the file), but building
    a chip with 128 x 1024 of them takes ~2 s; a program only needs ``m`` (the next power of two of its
    inputs per core, cached), which takes ~0.2 s. Every other line of the file is used as it is."""
    m = 1 << max(0, int(inputs_per_core) - 1).bit_length()
    if m not in _ARCH:
        import tempfile
        from pathlib import Path

        sf = _sanafe()
        text = (Path(sf.__file__).parent / "examples" / "loihi.yaml").read_text()
        full = f"loihi_inputs[0..{INPUTS_PER_CORE - 1}]"
        if full not in text:
            raise RuntimeError(f"sanafe/examples/loihi.yaml has no {full} soma line; sanafe {sanafe_version()} differs from 2.2.9")
        with tempfile.TemporaryDirectory() as d:
            path = Path(d) / "loihi.yaml"
            path.write_text(text.replace(full, f"loihi_inputs[0..{min(m, INPUTS_PER_CORE) - 1}]"))
            _ARCH[m] = sf.load_arch(str(path))
    return _ARCH[m]


def engine_errors() -> tuple[type[BaseException], ...]:
    """SANA-FE's own refusal types (``HardwareMappingError`` derives from Exception, not RuntimeError)."""
    try:
        from sanafecpp import HardwareMappingError
    except ImportError:
        return ()
    return (HardwareMappingError,)


def sanafe_version() -> str | None:
    """The installed sanafe version (None when the package is missing)."""
    sf = _sanafe()
    if sf is None:
        return None
    from importlib.metadata import version

    return version("sanafe")


@dataclass(frozen=True, kw_only=True)
class Placement:
    """Core of every input channel and of every layer neuron, as the fabric's loihi mapping places them."""

    input_cores: np.ndarray  # [n_in]
    layer_cores: list[np.ndarray]  # per layer [n_out]

    @property
    def n_cores(self) -> int:
        return int(max([int(self.input_cores.max(initial=-1)), *[int(c.max(initial=-1)) for c in self.layer_cores]]) + 1)


def place(n_in: int, cores: list[CoreMap], total_cores: int = 128) -> Placement:
    """Inputs on cores ``0..ceil(n_in/1024)-1``, then each layer's ``cm.cores`` cores in order."""
    inp = np.arange(n_in) // INPUTS_PER_CORE
    base = int(math.ceil(n_in / INPUTS_PER_CORE))
    layer = []
    for cm in cores:
        layer.append(base + np.arange(cm.n_out) // cm.per_core)
        base += cm.cores
    if base > total_cores:
        raise ValueError(f"sanafe: the program needs {base} cores (inputs + layers), the Loihi architecture has "
                         f"{total_cores}")
    return Placement(input_cores=inp, layer_cores=layer)


def _hop_energy(src: np.ndarray, dst: np.ndarray, c: DeviceConstants) -> np.ndarray:
    """Mesh energy of one packet from each ``src`` core to each ``dst`` core ``[len(src), len(dst)]``:
    dimension-ordered hops, east/west and north/south priced apart (tile t at x = t // h, y = t % h)."""
    per_tile, h = int(c.value("cores_per_tile")), int(c.value("mesh_height_tiles"))
    ts, td = src // per_tile, dst // per_tile
    dx = np.abs((ts // h)[:, None] - (td // h)[None, :])
    dy = np.abs((ts % h)[:, None] - (td % h)[None, :])
    return dx * c.value("e_hop_ew_j") + dy * c.value("e_hop_ns_j")


def _updates(current: np.ndarray, arrived: np.ndarray, spikes: np.ndarray, fl: FixedLayer) -> int:
    """SANA-FE's neuron updates of one layer: a neuron is updated at a step when spikes reach it then
    (dense fan-in: any presynaptic spike reaches every neuron, ``arrived [T]``), or its potential is
    not at rest (``v != 0``), or it has a bias. ``v`` follows SANA-FE's LIF ``v = bias + v * leak +
    current`` with the reset taken from the given raster ``spikes [T, n]``, so a potential that
    cancels to exactly 0 is at rest again, as in the simulator."""
    steps, n = spikes.shape
    bias = effective_bias(fl.bias_mant, fl.bias_exp).astype(np.float64)
    leak = (DECAY_UNITY - fl.dv) / DECAY_UNITY
    v = np.zeros(n)
    total = 0
    for t in range(steps):
        upd = (v != 0) | (bias != 0) | bool(arrived[t])
        total += int(upd.sum())
        v = np.where(upd, bias + v * leak + current[t], v)
        v[spikes[t] > 0] = 0.0
    return total


def _weights(fl: FixedLayer) -> list[np.ndarray]:
    """The layer's SANA-FE weights ``[n_out, n_pre]``: Lava's effective weights x ``2^(weight_exp + 6)``
    (feed-forward, then recurrent when the layer has one)."""
    out = [effective_weights(fl.weights, fl.num_weight_bits).astype(np.float64) * 2.0 ** (fl.weight_exp + ACT_SHIFT)]
    if fl.rec_weights is not None:
        out.append(effective_weights(fl.rec_weights, fl.num_weight_bits).astype(np.float64)
                   * 2.0 ** (fl.rec_weight_exp + ACT_SHIFT))
    return out


def event_counts(layers: list[FixedLayer], placement: Placement, x: np.ndarray, rasters: list[np.ndarray],
                 c: DeviceConstants) -> dict[str, float]:
    """SANA-FE's event counts of one sample: input raster ``x [T, n_in]``, layer rasters ``[T, n_l]``.

    Spikes at step t are delivered at step t + 1 (one hop of delay) to every neuron of the next layer
    (and, recurrent, of the own layer); the hop energy is summed per packet here as well."""
    pre = [np.asarray(x) > 0, *[np.asarray(r) > 0 for r in rasters[:-1]]]
    pre_cores = [placement.input_cores, *placement.layer_cores[:-1]]
    out = dict.fromkeys(("accesses", "updates", "fired", "deliveries", "packets", "hop_energy_j"), 0.0)
    for k, fl in enumerate(layers):
        s = np.asarray(rasters[k]) > 0
        steps = s.shape[0]
        sources = [(pre[k], pre_cores[k])]
        if fl.rec_weights is not None:
            sources.append((s, placement.layer_cores[k]))
        dst = np.unique(placement.layer_cores[k])
        current = np.zeros((steps, fl.n_out))
        arrived = np.zeros(steps, dtype=bool)
        for (spk, src_cores), w in zip(sources, _weights(fl), strict=True):
            per_neuron = spk.sum(axis=0).astype(np.float64)
            out["deliveries"] += float(per_neuron.sum()) * fl.n_out
            out["packets"] += float(per_neuron.sum()) * len(dst)
            out["hop_energy_j"] += float(per_neuron @ _hop_energy(src_cores, dst, c).sum(axis=1))
            current[1:] += spk[:-1].astype(np.float64) @ w.T
            arrived[1:] |= spk[:-1].any(axis=1)
        out["accesses"] += float(fl.n_out * steps)
        out["fired"] += float(s.sum())
        out["updates"] += float(_updates(current, arrived, s, fl))
    return out


def energy_from_counts(n: dict[str, float], c: DeviceConstants) -> dict[str, float]:
    """The fabric's full-term Loihi energy (J), grouped as SANA-FE reports it (synapse, soma, network)."""
    soma = (n["accesses"] * c.value("e_access_neuron_j") + n["updates"] * c.value("e_neuron_j")
            + n["fired"] * c.value("e_spike_j"))
    network = n["packets"] * (c.value("e_message_out_j") + c.value("e_message_in_j")) + n["hop_energy_j"]
    synapse = n["deliveries"] * c.value("e_syn_j")
    return {"synapse": synapse, "soma": soma, "network": network, "total": synapse + soma + network}


def build_network(layers: list[FixedLayer], placement: Placement, x: np.ndarray) -> tuple[Any, Any]:
    """(architecture, network) for one sample ``x [T, n_in]`` on the Loihi architecture (:func:`_arch`)."""
    sf = _sanafe()
    n_in = int(x.shape[1])
    arch = _arch(min(n_in, INPUTS_PER_CORE))
    hw = arch.cores()
    net = sf.Network()
    inp = net.create_neuron_group("in", n_in)
    for i in range(n_in):
        inp.neurons[i].set_attributes(soma_hw_name=f"loihi_inputs[{i % INPUTS_PER_CORE}]",
                                      model_attributes={"spikes": [bool(b) for b in x[:, i]]})
        inp.neurons[i].map_to_core(hw[int(placement.input_cores[i])])
    prev = inp
    for k, fl in enumerate(layers):
        bias = effective_bias(fl.bias_mant, fl.bias_exp).astype(np.float64)
        g = net.create_neuron_group(f"l{k}", fl.n_out, soma_hw_name="loihi_lif",
                                    default_synapse_hw_name="loihi_dense_synapse", log_spikes=True,
                                    model_attributes={"threshold": float(fl.vth << VTH_SHIFT),
                                                      "leak_decay": (DECAY_UNITY - fl.dv) / DECAY_UNITY,
                                                      "reset_mode": "hard", "reset": 0.0})
        for j in range(fl.n_out):
            if bias[j]:
                g.neurons[j].set_attributes(model_attributes={"bias": float(bias[j])})
            g.neurons[j].map_to_core(hw[int(placement.layer_cores[k][j])])
        ws = _weights(fl)
        prev.connect_neurons_dense(g, {"weight": ws[0].T.ravel().tolist()})  # row-major (pre, post)
        if len(ws) > 1:
            g.connect_neurons_dense(g, {"weight": ws[1].T.ravel().tolist()})
        prev = g
    return arch, net


def simulate(layers: list[FixedLayer], placement: Placement, x: np.ndarray) -> dict[str, Any]:
    """One SANA-FE run of sample ``x [T, n_in]``: energy breakdown (J), ``sim_time`` (s), layer rasters."""
    arch, net = build_network(layers, placement, np.asarray(x) > 0)
    chip = _sanafe().SpikingChip(arch)  # a fresh chip per network: reset() + load() leaks state on 2.2.9
    chip.load(net)
    steps = int(x.shape[0])
    with native_stdout_to_stderr():  # its C++ progress line would corrupt `fabric run --json`
        res = chip.sim(steps, spike_trace=True)
    rasters = [np.zeros((steps, fl.n_out), dtype=np.uint8) for fl in layers]
    index = {f"l{k}": k for k in range(len(layers))}
    for t, step in enumerate(res["spike_trace"]):
        for a in step:
            k = index.get(a.group_name)
            if k is not None:
                rasters[k][t, a.neuron_offset] = 1
    e = {k: float(v) for k, v in res["energy"].items()}
    return {"energy": e, "sim_time": float(res["sim_time"]), "rasters": rasters, "packets": int(res["packets_sent"]),
            "updates": int(res["neurons_updated"]), "fired": int(res["neurons_fired"])}


def compare(layers: list[FixedLayer], cores: list[CoreMap], xp: np.ndarray, fabric_rasters: list[np.ndarray],
            fabric_time_s: float, c: DeviceConstants, *, max_samples: int = 4) -> dict[str, Any]:
    """The ``sanafe`` block: SANA-FE vs the fabric's full-term model, per inference (mean over samples).

    ``xp`` ``[B, T + L, n_in]`` is the padded input the device runs, ``fabric_rasters`` the emulator's
    layer rasters ``[B, T + L, n_l]`` of it, ``fabric_time_s`` the fabric's modelled time per inference.
    """
    ver = sanafe_version()
    if ver is None:
        return {"status": "unavailable", "summary": "sanafe is not installed (pip install sanafe==2.2.9)"}
    placement = place(int(xp.shape[2]), cores)
    n = min(int(xp.shape[0]), int(max_samples))
    sf_e, sf_t, acc_e, fab_e = [], [], [], []
    for b in range(n):
        r = simulate(layers, placement, xp[b])
        sf_e.append(r["energy"])
        sf_t.append(r["sim_time"])
        acc_e.append(energy_from_counts(event_counts(layers, placement, xp[b], r["rasters"], c), c)["total"])
        fab_e.append(energy_from_counts(event_counts(layers, placement, xp[b], [fr[b] for fr in fabric_rasters], c), c))
    e_sf = float(np.mean([e["total"] for e in sf_e]))
    e_fab = float(np.mean([e["total"] for e in fab_e]))
    e_acc = float(np.mean(acc_e))
    t_sf = float(np.mean(sf_t))
    ratio = e_fab / e_sf if e_sf > 0 else math.inf
    acc_ratio = e_acc / e_sf if e_sf > 0 else math.inf
    ok = abs(ratio - 1) <= ENERGY_TOLERANCE and abs(acc_ratio - 1) <= ACCOUNTING_TOLERANCE
    block = {
        "status": "within-tolerance" if ok else "outside-tolerance",
        "energy_mj_sanafe": e_sf * 1e3, "energy_mj_fabric": e_fab * 1e3,
        "time_ms_sanafe": t_sf * 1e3, "time_ms_fabric": float(fabric_time_s) * 1e3,
        "ratio": ratio, "tolerance": ENERGY_TOLERANCE,
        "accounting_ratio": acc_ratio, "accounting_tolerance": ACCOUNTING_TOLERANCE,
        "time_ratio": float(fabric_time_s) / t_sf if t_sf > 0 else math.inf,
        "breakdown_mj_sanafe": {k: float(np.mean([e[k] for e in sf_e])) * 1e3 for k in sf_e[0]},
        "breakdown_mj_fabric": {k: float(np.mean([e[k] for e in fab_e])) * 1e3 for k in fab_e[0]},
        "samples": n, "reference": f"sanafe {ver}, architecture sanafe/examples/loihi.yaml (input soma units per core cut to the program's)",
    }
    block["summary"] = (
        f"{block['status']}: energy/inference fabric {block['energy_mj_fabric']:.4g} mJ vs SANA-FE "
        f"{block['energy_mj_sanafe']:.4g} mJ (ratio {ratio:.3f}, tolerance +-{ENERGY_TOLERANCE:g}; SANA-FE's LIF is "
        f"not CUBA, so spikes differ); fabric model on SANA-FE's own spikes {acc_ratio:.4f} (tolerance "
        f"+-{ACCOUNTING_TOLERANCE:g}); time/inference fabric {block['time_ms_fabric']:.4g} ms vs SANA-FE "
        f"{block['time_ms_sanafe']:.4g} ms (reported, not gated); {n} sample(s), sanafe {ver}")
    return block
