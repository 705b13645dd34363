"""dynapse's reference adapter: SynSense Rockpool 3.1.0 ``DynapSim`` (DYNAP-SE2 circuit model) on the
program's own synapse counts and the same input spikes, and Rockpool's CAM allocator as a fit check.

Why statistical: DYNAP-SE2 is analog and both simulators draw mismatch, so no spike-for-spike claim
is possible. The check compares per-neuron firing rates (Pearson correlation, mean absolute rate
difference relative to the mean rate) and the per-sample output class (argmax of output counts)
against stated tolerances (:data:`TOLERANCES`); the status is ``statistical-pass`` or
``statistical-fail`` with every figure in the result.

Parameter mapping, fabric DPI (:mod:`actors.dynapse.dpi`) -> ``DynapSim`` (file
``rockpool/devices/dynapse/simulation/dynapsim.py`` in the rockpool package), per layer:

* time constants are kept, currents are re-derived for DynapSim's capacitors (``C_mem``, ``C_syn`` of
  ``rockpool/devices/dynapse/lookup/defaults.py``): ``Itau = U_T C / (kappa tau)``, ``Igain = g_ratio
  Itau``, ``Ispkthr = thr_ratio Igain`` (the fabric's ``g_ratio``/``thr_ratio`` constants);
* weights: DynapSim has one combined synapse; a spike adds ``(Igain_syn / Itau_syn) w Iscale (1 -
  exp(-t_pulse / tau_syn))`` to ``I_syn``. ``w`` per synapse count is chosen so that this jump
  relative to ``Ispkthr`` equals the fabric's jump relative to its ``I_spkthr``; a connection's
  weight is ``(excitatory - inhibitory counts) x w`` (DynapSim clips a net negative drive at ``Io``);
* DC: DynapSim subtracts the leak ``Itau`` twice (``Iin = Isyn - Ileak + Idc``, then ``Iin -
  Ileak``), so ``Idc = 2 Itau + (the fabric's bias current relative to I_spkthr) x Ispkthr``;
* refractory period and AHP are off in the fabric's calibration: ``t_ref`` = 1 ns (``Iref``),
  ``Iw_ahp = Io``; ``Io`` (dark current, which sets DynapSim's positive feedback and reset) = the
  fabric's ``i_0``;
* mismatch: the same chip instance as the emulator's: the per-neuron factors the program's
  ``mismatch_cv`` and ``seed`` draw (the fabric's log-normal law, :mod:`fabric.model.mismatch`) scale
  DynapSim's currents one for one. DynapSim's own ``percent_mismatch`` sampler is not used: it
  compiles ~100 JAX kernels on construction (~26 s per layer here), and its draws would make the
  two chips different instances, so a disagreement could not be told from a mapping error.

Fit (:func:`cam_fit`): Rockpool's ``WeightAllocator(...).CAM_content()`` on every neuron's CAM entries
(one entry per synapse count, input and recurrent together); its ``DRCError`` text (e.g. "Maximum
synapse limit per neuron reached!") is the refusal.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from actors.base.common import quiet_vendor_import

__all__ = ["TOLERANCES", "rockpool_version", "cam_fit", "dynapsim_raster", "statistical_check"]

# stated tolerances: the two simulators share weights and chip instance but not the integrator (DynapSim: one
# Euler step per dt; the emulator: substeps) nor the synapse split (one combined DynapSim synapse)
TOLERANCES = {"rate_correlation_min": 0.8, "rate_mae_rel_max": 0.5, "class_agreement_min": 0.6}
T_REF_S = 1e-9
NEURONS_PER_CORE = 256  # rockpool/devices/dynapse/lookup/defaults.py NUM_NEURONS
FACTOR_KEYS = ("i_tau", "i_g", "i_spkthr", "i_dc", "syn_i_tau", "syn_i_g", "syn_i_w")


def _rockpool() -> Any:
    try:
        with quiet_vendor_import():
            logging.getLogger("rockpool").setLevel(logging.ERROR)
            import rockpool.devices.dynapse as dyn
    except ImportError:
        return None
    return dyn


def rockpool_version() -> str | None:
    """The installed rockpool version (None when rockpool or jax is missing)."""
    if _rockpool() is None:
        return None
    import rockpool

    return str(rockpool.__version__)


def cam_fit(counts: list[np.ndarray], cam: int) -> str | None:
    """Rockpool's CAM allocator on per-neuron synapse counts: ``counts`` = the ``[n_out, n_pre]`` count
    matrices of one layer (input, recurrent; all types). Returns the DRCError text, or None when it fits.

    Each CAM entry is one row of a virtual input matrix (row r of neuron j is set when j needs more
    than r entries), so the allocator counts exactly the entries the program stores."""
    dyn = _rockpool()
    if dyn is None:
        raise RuntimeError("rockpool is not installed (pip install rockpool==3.1.0 jax[cpu])")
    from rockpool.devices.dynapse.hardware.config.allocator import WeightAllocator
    from rockpool.typehints import DRCError

    per_neuron = sum(np.asarray(c, dtype=np.int64).sum(axis=1) for c in counts)
    # one core (256 neurons) at a time: CAMs are per neuron, and the virtual rows must not use up the
    # allocator's 2048 tags, which a real program spends on its sources, not on these rows
    for lo in range(0, int(per_neuron.shape[0]), NEURONS_PER_CORE):
        part = per_neuron[lo:lo + NEURONS_PER_CORE]
        n = int(part.shape[0])
        rows = max(1, int(part.max(initial=0)))
        virt = (np.arange(rows)[:, None] < part[None, :]).astype(np.int64)
        try:
            WeightAllocator(weights_in=virt, weights_rec=np.zeros((n, n), dtype=np.int64), sign_in=np.ones_like(virt),
                            sign_rec=np.ones((n, n), dtype=np.int64), core_map=[0] * n).CAM_content(num_synapses=cam)
        except DRCError as exc:
            return str(exc)
    return None


def _layer_module(m: dict[str, Any], counts: dict[str, np.ndarray], consts: Any, f: dict[str, np.ndarray],
                  dt: float, exc: str) -> tuple[Any, Any]:
    """(LinearJax, DynapSim) for one layer of the program (see the module docstring for the mapping);
    ``f``: per-neuron mismatch factors of the chip instance (``i_tau``, ``i_g``, ``i_spkthr``, ``i_dc``,
    ``syn_i_tau``, ``syn_i_g``, ``syn_i_w``), all ones for the ideal chip."""
    from rockpool.devices.dynapse import DynapSim
    from rockpool.devices.dynapse.lookup.defaults import (
        default_currents,
        default_layout,
        default_weights,
    )
    from rockpool.nn.modules import LinearJax

    v = consts.value
    lay = default_layout
    kappa = (lay["kappa_n"] + lay["kappa_p"]) / 2
    n = int(m["n_out"])
    itau_mem = lay["Ut"] * lay["C_mem"] / (kappa * m["tau_mem"])
    igain_mem = v("g_ratio") * itau_mem
    ispkthr = v("thr_ratio") * igain_mem
    tau_syn = float(m["tau_syn"][exc])
    itau_syn = lay["Ut"] * lay["C_syn"] / (kappa * tau_syn)
    igain_syn = v("g_ratio") * itau_syn
    t_pulse = lay["Vth"] * lay["C_pulse"] / default_currents["Ipulse"]
    f_charge = 1.0 - np.exp(-t_pulse / tau_syn)
    iscale = default_weights["Iscale"]
    # the fabric's jump per count relative to its I_spkthr (actors.dynapse.dpi.calibrate_layer), physics-free
    rel_jump = m["ref_gain_s"] * m["weight_step"] / (v("g_ratio") * tau_syn * m["threshold"])
    w_count = rel_jump * ispkthr / (v("g_ratio") * iscale * f_charge)
    rel_bias = max(m["bias_v"], 0.0) / (m["threshold"] * v("g_ratio"))
    ff = (counts["ff.exc"].astype(np.float64) - counts["ff.inh"].astype(np.float64)) * w_count  # [n_out, n_in]
    rec = None
    if m["recurrent"]:
        rec = ((counts["rec.exc"].astype(np.float64) - counts["rec.inh"].astype(np.float64)) * w_count).T
    ff = ff * f["syn_i_w"][:, None]  # a neuron's base weight current scales its incoming weights
    if rec is not None:
        rec = rec * f["syn_i_w"][None, :]
    lin = LinearJax((ff.shape[1], n), weight=ff.T.astype(np.float32), has_bias=False)
    full = np.ones(n, dtype=np.float32)

    def cur(x: float, key: str) -> np.ndarray:
        return (full * x * f[key]).astype(np.float32)

    # the leak offset of Idc follows the neuron's own (mismatched) Itau, as the fabric's i_dc does
    idc = 2 * itau_mem * f["i_tau"] + rel_bias * ispkthr * f["i_dc"]
    sim = DynapSim(
        (n, n) if rec is not None else n, has_rec=rec is not None,
        w_rec=None if rec is None else rec.astype(np.float32),
        Itau_mem=cur(itau_mem, "i_tau"), Igain_mem=cur(igain_mem, "i_g"), Ispkthr=cur(ispkthr, "i_spkthr"),
        Itau_syn=cur(itau_syn, "syn_i_tau"), Igain_syn=cur(igain_syn, "syn_i_g"),
        Idc=idc.astype(np.float32), Iref=full * lay["Vth"] * lay["C_ref"] / T_REF_S,
        Iw_ahp=full * v("i_0"), Io=full * v("i_0"), dt=float(dt),
    )
    return lin, sim


def dynapsim_raster(program: Any, spikes: np.ndarray, consts: Any,
                    factors: list[dict[str, np.ndarray]] | None = None) -> list[np.ndarray]:
    """Per-layer DynapSim spike rasters ``[B, T, n_l]`` of ``program`` on ``spikes`` ``[B, T, n_in]``;
    ``factors``: per layer, the chip instance's per-neuron mismatch factors (None: the ideal chip)."""
    if _rockpool() is None:
        raise RuntimeError("rockpool is not installed (pip install rockpool==3.1.0 jax[cpu])")
    meta, a = program.meta, program.arrays
    o = meta["options"]
    h = np.asarray(spikes, dtype=np.float32)
    if factors is not None and len(factors) != len(meta["layers"]):
        raise ValueError(f"dynapse reference: {len(factors)} factor sets for {len(meta['layers'])} layers")
    out = []
    for i, m in enumerate(meta["layers"]):
        counts = {k: a[f"l{i}.{k}"] for k in ("ff.exc", "ff.inh", "rec.exc", "rec.inh") if f"l{i}.{k}" in a}
        ones = np.ones(int(m["n_out"]))
        f = factors[i] if factors is not None else dict.fromkeys(FACTOR_KEYS, ones)
        lin, sim = _layer_module(m, counts, consts, f, meta["dt"], o["excitatory"])
        cur, _, _ = lin(h)
        s, _, _ = sim(np.asarray(cur), record=False)
        h = np.clip(np.asarray(s, dtype=np.float32), 0, 1)
        out.append(h)
    return out


def statistical_check(fabric: list[np.ndarray], reference: list[np.ndarray], version: str,
                      tolerances: dict[str, float] | None = None) -> dict[str, Any]:
    """Rate and class agreement of the fabric's layer rasters with DynapSim's (``[B, T, n_l]`` each)."""
    tol = dict(TOLERANCES if tolerances is None else tolerances)
    fr = np.concatenate([np.asarray(r).mean(axis=(0, 1)) for r in fabric])  # spikes per step, per neuron
    rr = np.concatenate([np.asarray(r).mean(axis=(0, 1)) for r in reference])
    mean_rate = float((fr.mean() + rr.mean()) / 2)
    corr = float(np.corrcoef(fr, rr)[0, 1]) if fr.std() > 0 and rr.std() > 0 else (1.0 if np.allclose(fr, rr) else 0.0)
    mae_rel = float(np.abs(fr - rr).mean() / mean_rate) if mean_rate > 0 else 0.0
    cf, cr = np.asarray(fabric[-1]).sum(axis=1), np.asarray(reference[-1]).sum(axis=1)
    # a sample whose output is silent in both says nothing about the class: it is left out, not agreed
    voiced = (cf.sum(axis=1) > 0) | (cr.sum(axis=1) > 0)
    agree = float(np.mean(cf.argmax(axis=1)[voiced] == cr.argmax(axis=1)[voiced])) if voiced.any() else 0.0
    silent = mean_rate == 0 or not voiced.any()
    ok = (not silent and corr >= tol["rate_correlation_min"] and mae_rel <= tol["rate_mae_rel_max"]
          and agree >= tol["class_agreement_min"])
    figures = {"rate_correlation": corr, "rate_mae_rel": mae_rel, "class_agreement": agree,
               "samples_with_output": int(voiced.sum()),
               "mean_rate_fabric": float(fr.mean()), "mean_rate_reference": float(rr.mean()), "neurons": int(fr.size)}
    status = "statistical-pass" if ok else "statistical-fail"
    why = " (outputs silent in both: no evidence)" if silent else ""
    summary = (f"{status}{why}: per-neuron rate correlation {corr:.3f} (min {tol['rate_correlation_min']}), mean |rate "
               f"difference| {mae_rel:.1%} of the mean rate (max {tol['rate_mae_rel_max']:.0%}), output class agreement "
               f"{agree:.1%} (min {tol['class_agreement_min']:.0%}) over {int(voiced.sum())} of {int(cf.shape[0])} samples with "
               f"output spikes, {int(fr.size)} neurons; "
               f"reference rockpool {version} DynapSim (DYNAP-SE2 model, mismatch seeded)")
    return {"status": status, "summary": summary, "samples": int(cf.shape[0]), "figures": figures, "tolerances": tol,
            "reference": f"rockpool {version} DynapSim"}
