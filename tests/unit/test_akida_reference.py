"""akida checked against BrainChip's own engine (issue #16 item 1): the emulator's integer outputs equal
``akida.Model.forward`` bit for bit, and BrainChip's mapper on a virtual AKD1000 is part of the fit
verdict. No Ray; akida 2.19.3 from PyPI (numpy only)."""

from __future__ import annotations

import nir
import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from actors.akida import reference
from fabric.kinds import capabilities, make_runtime
from fabric.model.snn import LifMLP, export_nir
from fabric.model.train import train_loop
from fabric.records import FitError

pytest.importorskip("akida")
DT = 1e-3


def lif(n: int, thr: np.ndarray | float = 1.0, beta: float = 0.9, v_leak: float = 0.0) -> nir.LIF:
    tau = DT / (1 - beta)
    return nir.LIF(tau=np.full(n, tau), r=np.full(n, tau / DT), v_leak=np.full(n, v_leak),
                   v_threshold=np.broadcast_to(np.asarray(thr, np.float64), (n,)).copy(), v_reset=np.zeros(n))


def mlp(sizes: list[int], rng: np.random.Generator, *, thr: list[np.ndarray] | None = None,
        weights: list[np.ndarray] | None = None, bias: float = 0.05) -> nir.NIRGraph:
    """Input -> (Affine -> LIF) per layer -> Output."""
    nodes: list[tuple[str, nir.NIRNode]] = [("input", nir.Input(input_type={"input": np.array([sizes[0]])}))]
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=False)):
        w = weights[i] if weights is not None else rng.normal(0, 1.5 / np.sqrt(a), (b, a))
        nodes += [(f"fc{i}", nir.Affine(weight=np.asarray(w, np.float64), bias=rng.normal(0, bias, b))),
                  (f"lif{i}", lif(b, 1.0 if thr is None else thr[i], beta=float(rng.uniform(0.7, 0.99))))]
    nodes.append(("output", nir.Output(output_type={"output": np.array([sizes[-1]])})))
    return nir.NIRGraph(nodes=dict(nodes), edges=[(a[0], b[0]) for a, b in zip(nodes, nodes[1:], strict=False)],
                        metadata={"dt": DT})


def spikes(rng: np.random.Generator, b: int, t: int, n: int, p: float = 0.3) -> np.ndarray:
    return (rng.random((b, t, n)) < p).astype(np.float32)


def test_capabilities_declare_the_engine_and_fingerprint_names_its_version():
    assert capabilities("akida").reference == "akida 2.19.3 Model.forward (bit-exact)"
    assert make_runtime("akida").reference_fingerprint() == ["akida", "2.19.3"]


def test_trained_lif_mlp_is_bit_exact_against_the_engine():
    d = load_digits()
    rng = np.random.default_rng(0)
    x = (rng.random((300, 12, 64)) < 0.5 * (d.data[:300, None, :] / 16.0)).astype(np.float32)
    y = d.target[:300]
    torch.manual_seed(0)
    model = LifMLP(64, [32], 10, 0.9, 1.0)
    train_loop(model, x[:200], y[:200], epochs=2, lr=1e-2, seed=0, batch_size=32)
    rt = make_runtime("akida")
    prog = rt.compile(export_nir(model))
    res = rt.reference_check(prog, x[200:])
    assert res["status"] == "bit-exact", res["summary"]
    assert res["samples"] == 100 and res["max_error"] == 0 and res["outputs_compared"] == 1000
    acc = float(np.mean(np.argmax(rt.run(x[200:]).counts, axis=1) == y[200:]))
    assert acc > 0.2  # twice chance after a short training: the integer frame program still classifies


def test_100_random_networks_are_bit_exact():
    rng = np.random.default_rng(16)
    for case in range(100):
        depth = int(rng.integers(1, 4))
        sizes = [int(rng.integers(1, 48)) for _ in range(depth + 1)]
        thr = [rng.uniform(0.2, 3.0, n) for n in sizes[1:]]
        opts = {"weight_bits": int(rng.choice([1, 2, 4])), "act_bits": int(rng.choice([1, 2, 4])),
                "input_bits": int(rng.choice([1, 2, 4])), "readout": str(rng.choice(["potential", "activation"]))}
        rt = make_runtime("akida")
        prog = rt.compile(mlp(sizes, rng, thr=thr), opts)
        x = spikes(rng, 8, int(rng.integers(1, 40)), sizes[0], float(rng.uniform(0.05, 0.9)))
        res = rt.reference_check(prog, x)
        assert res["status"] == "bit-exact", (case, sizes, opts, res["summary"])


def test_a_perturbed_emulator_weight_is_a_mismatch_naming_the_first_output():
    rng = np.random.default_rng(3)
    rt = make_runtime("akida")
    prog = rt.compile(mlp([6, 4], rng))
    x = np.ones((3, 10, 6), np.float32)  # every input active: weight (2, 3) reaches output 2 in every sample
    rt.load(prog)
    assert rt.reference_check(prog, x)["status"] == "bit-exact"
    w = rt._wq[0]
    w[2, 3] = w[2, 3] - 1 if w[2, 3] > -7 else w[2, 3] + 1  # the emulator's copy only; the program is intact
    res = rt.reference_check(prog, x)
    assert res["status"] == "mismatch"
    assert res["first_mismatch"]["sample"] == 0 and res["first_mismatch"]["output"] == 2
    assert res["mismatches"] == 3 and res["max_error"] == 10  # one weight step x input frame value 10
    assert "sample 0, output 2" in res["summary"]


def test_hybrid_programs_are_unavailable_and_conv_programs_checked_never_a_silent_pass():
    rng = np.random.default_rng(0)
    g = mlp([8, 6, 3], rng)
    nodes = dict(g.nodes)
    nodes["lif1"] = nir.CubaLIF(tau_mem=np.full(3, 0.01), tau_syn=np.full(3, 0.005), r=np.full(3, 10.0),
                                v_leak=np.zeros(3), v_threshold=np.ones(3), v_reset=np.zeros(3), w_in=np.ones(3))
    hyb = nir.NIRGraph(nodes=nodes, edges=g.edges, metadata={"dt": DT})
    rt = make_runtime("akida")
    prog = rt.compile(hyb, {"fallback": "hybrid"})
    res = rt.reference_check(prog, spikes(rng, 2, 10, 8))
    assert res["status"] == "unavailable" and "hybrid" in res["reason"] and "cpu" in res["reason"]

    conv = nir.Conv2d(input_shape=(6, 6), weight=rng.normal(0, 0.5, (2, 1, 3, 3)), stride=1, padding=0, dilation=1,
                      groups=1, bias=np.zeros(2))
    cg = nir.NIRGraph(nodes={"input": nir.Input(input_type={"input": np.array([1, 6, 6])}), "c0": conv,
                             "lif0": lif(2 * 4 * 4), "output": nir.Output(output_type={"output": np.array([32])})},
                      edges=[("input", "c0"), ("c0", "lif0"), ("lif0", "output")], metadata={"dt": DT},
                      type_check=False)
    # conv programs are built as InputConvolutional layers now (tests/unit/test_akida_conv.py): the mapper
    # refuses a first conv layer without activation (an explicit potential readout), and the default
    # (activation readout for a single-conv net) is checked bit-exact
    with pytest.raises(FitError, match="can only be mapped if its activations are enabled"):
        make_runtime("akida").compile(cg, {"readout": "potential"})
    rt = make_runtime("akida")
    prog = rt.compile(cg)
    assert prog.meta["options"]["readout"] == "activation"
    res = rt.reference_check(prog, spikes(rng, 2, 10, 36))
    assert res["status"] == "bit-exact" and "InputConvolutional" in res["layers"]


def test_without_akida_the_check_is_unavailable_and_the_mapper_a_note(monkeypatch):
    monkeypatch.setattr(reference, "_akida", lambda: None)
    rt = make_runtime("akida")
    prog = rt.compile(mlp([8, 3], np.random.default_rng(0)))
    assert any("vendor mapper not run: akida is not installed" in n for n in prog.fit.notes)
    assert not any("akida mapper" in i.name for i in prog.fit.items)
    res = rt.reference_check(prog, spikes(np.random.default_rng(0), 2, 5, 8))
    assert res["status"] == "unavailable" and "not installed" in res["reason"]


def test_mapper_np_counts_and_program_memory_are_in_the_fit_report():
    prog = make_runtime("akida").compile(mlp([64, 32, 16, 10], np.random.default_rng(0)))
    items = {i.name: i for i in prog.fit.items}
    fnp3 = items["AKD1000 FNP3 NPs (akida mapper)"]
    assert (fnp3.used, fnp3.limit) == (3, 18)
    assert any("program memory" in n and "FNP3" in n for n in prog.fit.notes)
    assert any("fit verdict: emulator limits ok" in n and "both accept" in n for n in prog.fit.notes)


def test_one_layer_over_the_mappers_limit_is_refused_with_its_message():
    """AKD1000 has 18 FNP3 + 4 FNP2: 22 FullyConnected layers map, a 23rd is refused by the mapper,
    although the emulator's own NPU estimate (23 of 80) would accept it: the stricter verdict wins."""
    rng = np.random.default_rng(0)
    make_runtime("akida").compile(mlp([8] * 23, rng))
    with pytest.raises(FitError) as err:
        make_runtime("akida").compile(mlp([8] * 24, rng))
    msg = str(err.value)
    assert "akida mapper (AKD1000, hw_only=True) refused" in msg
    assert "Not enough hardware components of type FNP3" in msg
    assert "the akida mapper refuses (stricter than the emulator's limits)" in " ".join(err.value.report.notes)


def test_units_one_over_the_mappers_field_width_are_refused():
    g = lambda n: mlp([1, n], np.random.default_rng(0), weights=[np.ones((n, 1))])  # noqa: E731
    make_runtime("akida").compile(g(131071))
    with pytest.raises(FitError, match="17-bit field"):
        make_runtime("akida").compile(g(131072))
