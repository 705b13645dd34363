"""DPI (differential pair integrator) synapse and neuron dynamics of DYNAP-SE, as pure functions.

Equations from ARCANA, Quintana et al., arXiv:2409.14918 §2 (Chicca et al. 2014, DOI 10.1109/JPROC.2014.2313954):

* synapse (1): ``tau_s dI_syn/dt + I_syn = (I_gs / I_taus) I_w`` while an input pulse is on, with
  ``tau_s = C_syn U_T / (kappa I_taus)``. A pre-synaptic spike is a pulse of width ``t_pulse``; for
  ``t_pulse << tau_s`` each of the ``n`` synapses (CAM entries) it hits adds
  ``J = (I_gs / I_taus) I_w t_pulse / tau_s`` to ``I_syn``, which then decays with ``tau_s``.
  Types: AMPA (excitatory, into the input), NMDA (excitatory, passes only while ``I_mem`` exceeds
  ``I_nmda_thr``), GABA_A (inhibitory, subtracted from the input), GABA_B (inhibitory, a shunt added
  to the membrane leak: ``I_mem (1 + (I_ahp + I_gabab) / I_tau)``).
* neuron (2a-c): ``(1 + I_g/I_mem) tau dI_mem/dt + I_mem (1 + I_ahp/I_tau) = I_inf + f(I_mem)``,
  ``I_inf = (I_g/I_tau)(I_in - I_ahp - I_tau)``, ``tau = C_mem U_T / (kappa I_tau)``;
  AHP (2b) ``tau_ahp dI_ahp/dt + I_ahp = I_ahp_inf u(t)`` is modelled as a jump ``I_ahp_jump`` per
  spike with decay ``tau_ahp``;
  positive feedback (3) ``f = (I_fb/I_tau)(I_mem - I_g)``,
  ``I_fb = I_0^(1/(k+1)) I_mem^(k/(k+1)) / (1 + exp(-alpha (I_mem - I_g)))``.
  A spike is emitted when ``I_mem > I_spkthr``; ``I_mem`` is then reset to ``I_reset`` and held there
  for ``t_ref``.
* mismatch (§3): every current of every neuron (and of each neuron's synapse circuits) is multiplied
  by an independent log-normal factor of mean 1 and coefficient of variation ``cv`` (~0.2 on silicon,
  Zendrikov et al. 2023), drawn from a seeded generator: the same seed gives the same chip. The law
  is the core's (:mod:`fabric.model.mismatch`), shared with mismatch-aware training.

Integration is forward Euler on a substep grid (``dt / substeps``). Calibration from an abstract LIF
(``v <- beta v + g I``, threshold ``thr``) uses the linear regime of (2a) (``I_mem >> I_g``): a current
unit ``I_unit = I_spkthr / thr`` maps ``v`` to ``I_mem`` and synaptic jumps are chosen so the
steady-state response to an input rate equals the LIF's (see :func:`calibrate_layer`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from fabric.model.mismatch import lognormal_factors

__all__ = [
    "SYNAPSE_TYPES",
    "Physics",
    "CoreBiases",
    "DpiLayer",
    "tau_from_current",
    "current_for_tau",
    "synapse_jump",
    "positive_feedback",
    "calibrate_layer",
    "apply_mismatch",
    "simulate_dpi",
]

SYNAPSE_TYPES = ("AMPA", "NMDA", "GABA_A", "GABA_B")


@dataclass(frozen=True, kw_only=True)
class Physics:
    """Process constants of the subthreshold circuits."""

    u_t: float = 0.025  # thermal voltage [V]
    kappa: float = 0.7  # subthreshold slope factor
    i_0: float = 1e-14  # dark current [A]
    c_mem: float = 1.5e-12  # membrane capacitance [F]
    c_syn: float = 1.5e-12  # synapse capacitance [F]
    t_pulse: float = 1e-5  # input pulse width [s]


@dataclass(kw_only=True)
class CoreBiases:
    """One parameter set, shared by all neurons of a core (arrays become per-neuron after mismatch)."""

    i_tau: np.ndarray | float
    i_g: np.ndarray | float
    i_dc: np.ndarray | float
    i_spkthr: np.ndarray | float
    i_reset: np.ndarray | float
    i_ahp_jump: np.ndarray | float = 0.0
    tau_ahp: float = 0.05
    i_nmda_thr: np.ndarray | float = 0.0
    t_ref: float = 0.0
    fb_alpha: float = 0.0  # 1/A; 0 -> 1/I_g
    syn_i_tau: dict[str, np.ndarray | float] = field(default_factory=dict)
    syn_i_g: dict[str, np.ndarray | float] = field(default_factory=dict)
    syn_i_w: dict[str, np.ndarray | float] = field(default_factory=dict)  # base weight current per type


@dataclass(kw_only=True)
class DpiLayer:
    """A population on one or more cores: integer synapse counts (CAM entries) per synapse type."""

    name: str
    counts: dict[str, np.ndarray]  # type -> [n_out, n_in] non-negative synapse counts
    rec_counts: dict[str, np.ndarray] = field(default_factory=dict)  # type -> [n_out, n_out]
    biases: CoreBiases

    @property
    def n_out(self) -> int:
        return int(next(iter(self.counts.values())).shape[0])


def tau_from_current(i_tau: np.ndarray | float, c: float, phys: Physics) -> np.ndarray:
    """``tau = C U_T / (kappa I_tau)``."""
    return c * phys.u_t / (phys.kappa * np.asarray(i_tau, dtype=np.float64))


def current_for_tau(tau: np.ndarray | float, c: float, phys: Physics) -> np.ndarray:
    """Inverse of :func:`tau_from_current`: the leak bias current giving time constant ``tau``."""
    return c * phys.u_t / (phys.kappa * np.asarray(tau, dtype=np.float64))


def synapse_jump(i_g: np.ndarray | float, i_tau: np.ndarray | float, i_w: np.ndarray | float,
                 phys: Physics) -> np.ndarray:
    """Increment of ``I_syn`` per synapse per input pulse (eq. 1 with a short pulse)."""
    tau = tau_from_current(i_tau, phys.c_syn, phys)
    return np.asarray(i_g) / np.asarray(i_tau) * np.asarray(i_w) * phys.t_pulse / tau


def positive_feedback(i_mem: np.ndarray, i_g: np.ndarray, i_tau: np.ndarray, alpha: np.ndarray | float,
                      phys: Physics) -> np.ndarray:
    """``f(I_mem)`` of eq. (3)."""
    k = phys.kappa
    z = np.clip(-alpha * (i_mem - i_g), -60.0, 60.0)
    i_fb = phys.i_0 ** (1 / (k + 1)) * i_mem ** (k / (k + 1)) / (1 + np.exp(z))
    return i_fb / i_tau * (i_mem - i_g)


def calibrate_layer(
    *,
    tau_mem: float,
    threshold: float,
    ref_gain_s: float,
    bias_v: float,
    weight_step: float,
    tau_syn: dict[str, float],
    phys: Physics,
    g_ratio: float = 10.0,
    thr_ratio: float = 50.0,
) -> CoreBiases:
    """Core biases that make a DPI population approximate an abstract LIF population.

    ``ref_gain_s``: the LIF's steady-state ``v`` per unit weight per input rate (``v_ss = G w r``, in
    seconds; ``tau`` for a delta-synapse LIF with ``g = 1``). ``bias_v``: the LIF's steady-state ``v``
    from its bias. ``weight_step``: the abstract weight of one synapse count. ``I_g = g_ratio I_tau``,
    ``I_spkthr = thr_ratio I_g``; the DC input ``I_tau + ...`` cancels the ``-I_tau`` term of (2c).
    """
    i_tau = float(current_for_tau(tau_mem, phys.c_mem, phys))
    i_g = g_ratio * i_tau
    i_spkthr = thr_ratio * i_g
    i_unit = i_spkthr / threshold
    i_dc = i_tau + max(bias_v, 0.0) * i_unit * i_tau / i_g
    syn_tau, syn_g, syn_w = {}, {}, {}
    for typ, ts in tau_syn.items():
        s_tau = float(current_for_tau(ts, phys.c_syn, phys))
        s_g = g_ratio * s_tau
        # steady state: (I_g/I_tau) * J * tau_s * r == G * w * r * I_unit, J = (s_g/s_tau) I_w t_pulse / tau_s
        jump = ref_gain_s * weight_step * i_unit * i_tau / (i_g * ts)
        syn_tau[typ], syn_g[typ], syn_w[typ] = s_tau, s_g, jump * ts / ((s_g / s_tau) * phys.t_pulse)
    return CoreBiases(i_tau=i_tau, i_g=i_g, i_dc=i_dc, i_spkthr=i_spkthr, i_reset=phys.i_0 * 100,
                      fb_alpha=1.0 / i_g, syn_i_tau=syn_tau, syn_i_g=syn_g, syn_i_w=syn_w)


def _mismatch(value: np.ndarray | float, n: int, cv: float, rng: np.random.Generator) -> np.ndarray:
    """``n`` per-neuron copies of ``value``, each times a factor of the fabric's one mismatch law
    (:func:`fabric.model.mismatch.lognormal_factors`, mismatch-aware training draws from it too); ``cv <= 0``
    draws nothing, so the generator's stream (the chip instance) depends only on the mismatched currents."""
    base = np.broadcast_to(np.asarray(value, dtype=np.float64), (n,)).copy()
    if cv <= 0:
        return base
    return base * lognormal_factors(n, cv, rng)


def apply_mismatch(b: CoreBiases, n: int, cv: float, rng: np.random.Generator) -> CoreBiases:
    """Per-neuron copies of a core's biases, each current scaled by a log-normal factor (mean 1, CV ``cv``)."""
    m = {k: _mismatch(getattr(b, k), n, cv, rng) for k in ("i_tau", "i_g", "i_dc", "i_spkthr", "i_ahp_jump")}
    return replace(
        b, **m, i_reset=_mismatch(b.i_reset, n, 0.0, rng), i_nmda_thr=_mismatch(b.i_nmda_thr, n, cv, rng),
        syn_i_tau={t: _mismatch(v, n, cv, rng) for t, v in b.syn_i_tau.items()},
        syn_i_g={t: _mismatch(v, n, cv, rng) for t, v in b.syn_i_g.items()},
        syn_i_w={t: _mismatch(v, n, cv, rng) for t, v in b.syn_i_w.items()},
    )


def simulate_dpi(
    layers: list[DpiLayer], spikes: np.ndarray, dt: float, substeps: int, phys: Physics
) -> tuple[np.ndarray, dict[str, dict[str, float]]]:
    """Run DPI populations on spike input ``[B, T, n_in]``; return output raster ``[B, T, n_out]`` and
    per-layer stats (spikes, synaptic events = active pre x CAM entries, neuron updates per step).

    Layers must carry per-neuron biases (:func:`apply_mismatch`, ``cv=0`` for the ideal chip). Spikes
    of layer ``l`` reach layer ``l+1`` in the same substep; recurrent spikes one substep later.
    """
    x = np.asarray(spikes, dtype=np.float64)
    bsz, steps, _ = x.shape
    h = dt / substeps
    stats = {lay.name: {"spikes": 0.0, "synaptic_ops": 0.0, "neuron_updates": 0.0} for lay in layers}
    # input for the first layer: each step's spikes arrive in its first substep
    pre = np.zeros((bsz, steps, substeps, x.shape[2]))
    pre[:, :, 0] = x
    for lay in layers:
        b, n = lay.biases, lay.n_out
        tau = tau_from_current(b.i_tau, phys.c_mem, phys)
        jump = {t: synapse_jump(b.syn_i_g[t], b.syn_i_tau[t], b.syn_i_w[t], phys) for t in lay.counts}
        decay = {t: np.exp(-h / tau_from_current(b.syn_i_tau[t], phys.c_syn, phys)) for t in lay.counts}
        w = {t: c.astype(np.float64).T * jump[t][None, :] for t, c in lay.counts.items()}  # [n_in, n_out]
        wr = {t: c.astype(np.float64).T * jump[t][None, :] for t, c in lay.rec_counts.items()}
        cam = sum(c.astype(np.float64) for c in lay.counts.values()).T  # [n_in, n_out]
        cam_r = sum(c.astype(np.float64) for c in lay.rec_counts.values()).T if lay.rec_counts else None
        ahp_decay = np.exp(-h / b.tau_ahp)
        ref_steps = int(round(b.t_ref / h))
        i_mem = np.broadcast_to(np.asarray(b.i_reset), (bsz, n)).copy()
        i_ahp = np.zeros((bsz, n))
        i_syn = {t: np.zeros((bsz, n)) for t in set(lay.counts) | set(lay.rec_counts)}
        refr = np.zeros((bsz, n), dtype=np.int64)
        last = np.zeros((bsz, n))
        out = np.zeros((bsz, steps, substeps, n))
        st = stats[lay.name]
        for t in range(steps):
            for k in range(substeps):
                s_in = pre[:, t, k]
                active = s_in.any()
                for typ in i_syn:
                    i_syn[typ] *= decay[typ]
                    if active and typ in w:
                        i_syn[typ] += s_in @ w[typ]
                    if typ in wr and last.any():
                        i_syn[typ] += last @ wr[typ]
                if active:
                    st["synaptic_ops"] += float((s_in @ cam).sum())
                if cam_r is not None and last.any():
                    st["synaptic_ops"] += float((last @ cam_r).sum())
                gate = (i_mem > b.i_nmda_thr).astype(np.float64)
                i_in = b.i_dc + i_syn.get("AMPA", 0.0) + gate * i_syn.get("NMDA", 0.0) - i_syn.get("GABA_A", 0.0)
                shunt = i_syn.get("GABA_B", 0.0)
                i_inf = b.i_g / b.i_tau * (i_in - i_ahp - b.i_tau)
                f = positive_feedback(i_mem, b.i_g, b.i_tau, b.fb_alpha, phys)
                d = (-i_mem * (1 + (i_ahp + shunt) / b.i_tau) + i_inf + f) / (tau * (1 + b.i_g / i_mem))
                i_mem = np.maximum(i_mem + h * d, phys.i_0)
                i_mem = np.where(refr > 0, b.i_reset, i_mem)
                refr = np.maximum(refr - 1, 0)
                s = (i_mem > b.i_spkthr).astype(np.float64)
                i_mem = np.where(s > 0, b.i_reset, i_mem)
                refr = np.where(s > 0, ref_steps, refr)
                i_ahp = i_ahp * ahp_decay + s * b.i_ahp_jump
                out[:, t, k] = s
                last = s
            st["neuron_updates"] += float(bsz * n)
        st["spikes"] = float(out.sum())
        pre = out
    return pre.sum(axis=2), stats
