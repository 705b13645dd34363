"""Convolutional SNNs (issue #15): export of Conv2d / pooling / Flatten to NIR, the spike-for-spike
round trip through the cpu executor, templates on the user-module code path, and lowering on each kind
(dense expansion under each kind's limits, or a refusal naming the node type or the limit)."""

from __future__ import annotations

import nir
import numpy as np
import pytest
import snntorch as snn
import torch
from torch import nn

from fabric.ir.lowering import (
    GraphStructureError,
    UnsupportedNodeError,
    conv2d_matrix,
    pool2d_matrix,
)
from fabric.kinds import make_runtime
from fabric.model.templates import TEMPLATES, conv_snn, cuba_mlp, recurrent
from fabric.model.user import (
    SUPPORTED_LAYERS,
    SequentialSNN,
    SumPool2d,
    UserModelError,
    check_layers,
    export_sequential,
)
from fabric.records import FitError
from fabric.spec import MODEL_TEMPLATES, SpecError, parse_spec

Z = {"init_hidden": True, "reset_mechanism": "zero"}


def _scaled(net: nn.Sequential, gain: float = 3.0) -> nn.Sequential:
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.Linear | nn.Conv2d):
                m.weight.mul_(gain)
    return net


def _conv_net(variant: str) -> nn.Sequential:
    torch.manual_seed(3)
    if variant == "avg_sum":
        return _scaled(nn.Sequential(
            nn.Unflatten(1, (2, 8, 8)), nn.Conv2d(2, 4, 3, padding=1), snn.Leaky(beta=0.8, **Z), nn.AvgPool2d(2),
            nn.Conv2d(4, 6, 3), snn.Leaky(beta=0.85, **Z), SumPool2d(2), nn.Flatten(), nn.Linear(6, 5),
            snn.Leaky(beta=0.8, threshold=0.8, output=True, **Z)))
    # strided, 'same', no bias, a pool straight on the input, per-neuron beta
    return _scaled(nn.Sequential(
        nn.Unflatten(1, (2, 8, 8)), nn.AvgPool2d(2, stride=1), nn.Conv2d(2, 3, 3, stride=2, padding=1, bias=False),
        snn.Leaky(beta=0.9, **Z), nn.Conv2d(3, 4, 3, padding="same", dilation=1), snn.Leaky(beta=0.8, **Z),
        nn.Flatten(), nn.Dropout(0.1), nn.Linear(64, 5),
        snn.Leaky(beta=torch.linspace(0.7, 0.9, 5), threshold=0.7, output=True, **Z)), 4.0)


def _spikes(n: int = 24, t: int = 8, f: int = 128, p: float = 0.3) -> torch.Tensor:
    return (torch.rand(n, t, f, generator=torch.Generator().manual_seed(1)) < p).float()  # [B, T, F]


def _model(net: nn.Sequential, n_out: int = 5) -> SequentialSNN:
    return SequentialSNN(net, factory="m.py:build", params={}, n_in=128, n_out=n_out).eval()


@pytest.mark.parametrize("variant", ["avg_sum", "strided"])
def test_conv_export_round_trip_reproduces_snntorch_spikes(tmp_path, variant):
    model = _model(_conv_net(variant))
    x = _spikes()
    with torch.no_grad():
        ref, _ = model(x.permute(1, 0, 2))
    ref = ref.permute(1, 0, 2).numpy()
    assert ref.sum() > 20 and len(np.unique(ref.sum(1).argmax(1))) > 1, "test net must spike on several outputs"
    path = tmp_path / "conv.nir"
    nir.write(path, export_sequential(model))
    g = nir.read(path)  # type checks on (Flatten/Conv2d input types are written)
    g.infer_types()
    types = {type(n).__name__ for n in g.nodes.values()}
    assert {"Conv2d", "Flatten"} <= types and ("AvgPool2d" in types)
    assert variant != "avg_sum" or "SumPool2d" in types
    rt = make_runtime("cpu")
    rt.load(rt.compile(g))
    out = rt.run(x.numpy(), record_raster=True)
    np.testing.assert_array_equal(out.raster, ref)


@pytest.mark.parametrize("stride,padding,dilation,groups", [(1, 0, 1, 1), (2, 1, 1, 1), (1, 2, 2, 1), (1, 1, 1, 2),
                                                            (2, "same", 1, 1), (1, "same", 1, 1), (1, "valid", 1, 1)])
def test_conv_matrix_equals_torch_conv2d(stride, padding, dilation, groups):
    rng = np.random.default_rng(0)
    w = rng.normal(size=(4, 4 // groups, 3, 3))
    x = rng.normal(size=(3, 4, 7, 6))
    if padding == "same" and stride != 1:
        with pytest.raises(GraphStructureError, match="padding='same' needs stride 1"):
            conv2d_matrix(w, (4, 7, 6), stride, padding, dilation, groups)
        return
    m, shape = conv2d_matrix(w, (4, 7, 6), stride, padding, dilation, groups)
    want = torch.nn.functional.conv2d(torch.as_tensor(x), torch.as_tensor(w), stride=stride, padding=padding,
                                      dilation=dilation, groups=groups).numpy()
    assert want.shape[1:] == shape
    np.testing.assert_allclose(x.reshape(3, -1) @ m.T, want.reshape(3, -1), atol=1e-12)


def test_pool_matrix_equals_torch_pooling():
    x = np.random.default_rng(1).random((2, 3, 6, 6))
    for average, fn in [(True, torch.nn.functional.avg_pool2d), (False, None)]:
        m, shape = pool2d_matrix((3, 6, 6), 2, 2, average=average)
        want = torch.nn.functional.avg_pool2d(torch.as_tensor(x), 2).numpy() * (1 if average else 4)
        assert shape == (3, 3, 3) and fn in (None, torch.nn.functional.avg_pool2d)
        np.testing.assert_allclose(x.reshape(2, -1) @ m.T, want.reshape(2, -1), atol=1e-12)
    with pytest.raises(GraphStructureError, match="does not fit the 2x2 input"):
        pool2d_matrix((1, 2, 2), 3, 1, average=True)


# -- each kind, in process ---------------------------------------------------------------------------------
def _graph(variant: str = "avg_sum") -> tuple[nir.NIRGraph, np.ndarray, np.ndarray]:
    model = _model(_conv_net(variant))
    x = _spikes()
    with torch.no_grad():
        ref, _ = model(x.permute(1, 0, 2))
    return export_sequential(model), x.numpy(), ref.permute(1, 0, 2).numpy()


@pytest.mark.parametrize("kind", ["loihi", "spinnaker", "dynapse"])
def test_conv_lowers_to_each_dense_kind_and_runs(kind):
    g, x, ref = _graph()
    rt = make_runtime(kind)
    prog = rt.compile(g)
    assert any("Conv2d [2, 8, 8] -> [4, 8, 8] expanded to a dense 256x128" in n for n in prog.fit.notes)
    rt.load(prog)
    out = rt.run(x, record_raster=True)
    assert out.counts.shape == (24, 5) and out.counts.sum() > 0
    if kind in ("loihi", "spinnaker"):  # fixed-point kinds: well above chance (0.2) against the float net;
        # loihi's own arithmetic is proven bit-exact against Lava below
        agree = np.mean(np.asarray(out.counts).argmax(1) == ref.sum(1).argmax(1))
        assert agree >= {"loihi": 0.6, "spinnaker": 0.75}[kind], agree


def test_fpga_refuses_a_three_layer_conv_net_naming_its_layer_limit():
    g, _, _ = _graph()
    with pytest.raises(FitError, match=r"neuron layers .*3 layers used > 2 layers limit"):
        make_runtime("fpga").compile(g)


def test_akida_refuses_pooling_naming_the_node_type():
    g, _, _ = _graph()
    with pytest.raises(UnsupportedNodeError, match=r"node 'pool3' of type AvgPool2d is not supported by kind 'akida'"):
        make_runtime("akida").compile(g)


def test_loihi_conv_input_axon_limit_one_step_over():
    """A conv layer's dense expansion meets Loihi's 4096 input axons/core like a Linear of its size."""
    def graph(h: int, w: int, k: int) -> nir.NIRGraph:
        torch.manual_seed(0)
        net = nn.Sequential(nn.Unflatten(1, (1, h, w)), nn.Conv2d(1, 1, k, stride=k), snn.Leaky(beta=0.9, **Z),
                            nn.Flatten(), nn.Linear((h // k) * (w // k), 2), snn.Leaky(beta=0.9, output=True, **Z))
        return export_sequential(SequentialSNN(net, factory="m.py:b", params={}, n_in=h * w, n_out=2))

    make_runtime("loihi").compile(graph(16, 256, 16))  # 4096 inputs: fits
    with pytest.raises(FitError, match=r"input axons/core \(layer:conv1->lif2\): 4097 used > 4096"):
        make_runtime("loihi").compile(graph(17, 241, 17))  # 4097 inputs


def _one_conv_graph(in_shape: tuple[int, int, int], conv: nn.Module, seed: int) -> tuple[nir.NIRGraph, np.ndarray]:
    """conv (or pool + conv) -> LIF -> flatten -> linear -> LIF on ``in_shape`` ([C, H, W]), and input spikes."""
    torch.manual_seed(seed)
    n_in = int(np.prod(in_shape))
    with torch.no_grad():
        n_conv = conv(torch.zeros(1, *in_shape)).numel()
    net = _scaled(nn.Sequential(nn.Unflatten(1, in_shape), *(conv if isinstance(conv, nn.Sequential) else [conv]),
                                snn.Leaky(beta=0.85, **Z), nn.Flatten(),
                                nn.Linear(n_conv, 5), snn.Leaky(beta=0.8, threshold=0.8, output=True, **Z)))
    g = export_sequential(SequentialSNN(net, factory="m.py:build", params={}, n_in=n_in, n_out=5).eval())
    return g, _spikes(n=4, t=6, f=n_in).numpy().astype(np.uint8)


def test_loihi_conv_layers_keep_their_kernel_and_geometry():
    """A layer made of one Conv2d keeps its integer kernel (the dense matrix re-expands from it exactly);
    an unpadded pool folded into a conv keeps the composed kernel; pool + linear, a conv after a
    pool that the composition does not reproduce, and non-conv programs get no conv keys."""
    from actors.loihi.runtime import conv_kernel

    prog = make_runtime("loihi").compile(_graph()[0])
    layers = prog.meta["layers"]
    assert layers[0]["conv"] == {"in_shape": [2, 8, 8], "out_shape": [4, 8, 8], "stride": [1, 1],
                                 "padding": [1, 1], "dilation": [1, 1], "groups": 1}
    k = prog.arrays["l0.conv_weight"]
    assert k.shape == (4, 2, 3, 3) and k.dtype == np.int32 and np.abs(k).max() > 0
    np.testing.assert_array_equal(conv2d_matrix(k, (2, 8, 8), 1, 1)[0], prog.arrays["l0.weights"])
    assert layers[1]["conv"] == {"in_shape": [4, 8, 8], "out_shape": [6, 2, 2], "stride": [2, 2],
                                 "padding": [0, 0], "dilation": [1, 1], "groups": 1}  # AvgPool2d(2) + 3x3 conv
    assert prog.arrays["l1.conv_weight"].shape == (6, 4, 6, 6)
    np.testing.assert_array_equal(conv2d_matrix(prog.arrays["l1.conv_weight"], (4, 8, 8), 2)[0], prog.arrays["l1.weights"])
    assert "conv" not in layers[2] and "l2.conv_weight" not in prog.arrays
    shifted, _ = _one_conv_graph((2, 8, 8), nn.Sequential(nn.AvgPool2d(2, stride=1), nn.Conv2d(2, 3, 3, stride=2,
                                                                                                padding=1)), 4)
    assert "conv" not in make_runtime("loihi").compile(shifted).meta["layers"][0]  # padding sees real rows: Dense
    geo = {**layers[0]["conv"], "kernel_shape": [4, 2, 3, 3]}
    w = prog.arrays["l0.weights"].copy()
    w[0, 0] += 1  # one entry off the shared kernel: not a convolution any more
    assert conv_kernel(w, geo) is None and conv_kernel(prog.arrays["l0.weights"], geo) is not None
    lin = nn.Sequential(nn.Linear(128, 5), snn.Leaky(beta=0.8, output=True, **Z))
    plain = make_runtime("loihi").compile(export_sequential(_model(lin)))
    assert not any("conv" in m for m in plain.meta["layers"])
    assert not any(k.endswith("conv_weight") for k in plain.arrays)


def test_loihi_conv_golden_bit_exact_vs_lava():
    """Conv layers run as Lava's own Conv process (fixed_pt), bit-exact with the emulator, on three
    geometries (padding 1; stride 2 + padding 1; a rectangular input with dilation 2 and per-axis
    stride and padding; a sum pool folded into a stride-2 conv; samples ride side by side as Conv groups); a kernel changed only in the conv
    entry shows up as a mismatch (Lava used it), and a negative weight_exp keeps the layer on Dense,
    saying why."""
    from actors.loihi.fixed import emulate, program_layers
    from actors.loihi.golden import golden_check_many
    from fabric.records import Program

    rt = make_runtime("loihi")
    g, x, _ = _graph()
    progs = [rt.compile(g)]
    xs = [x[:4, :6].astype(np.uint8)]
    for in_shape, conv, seed in [((2, 8, 8), nn.Conv2d(2, 3, 3, stride=2, padding=1), 5),
                                 ((2, 6, 10), nn.Conv2d(2, 4, 3, stride=(1, 2), padding=(2, 1), dilation=2), 6),
                                 ((2, 8, 8), nn.Sequential(SumPool2d(2), nn.Conv2d(2, 3, 3, stride=2, padding=1)), 7)]:
        g2, x2 = _one_conv_graph(in_shape, conv, seed)
        progs.append(rt.compile(g2))
        xs.append(x2)
    assert progs[1].meta["layers"][0]["conv"]["stride"] == [2, 2] and progs[1].meta["layers"][0]["conv"]["padding"] == [1, 1]
    assert progs[3].meta["layers"][0]["conv"]["stride"] == [4, 4]  # sum pool folded into the strided conv
    assert progs[2].meta["layers"][0]["conv"] == {"in_shape": [2, 6, 10], "out_shape": [4, 6, 4], "stride": [1, 2],
                                                  "padding": [2, 1], "dilation": [2, 2], "groups": 1}
    for prog, xi in zip(progs, xs, strict=True):
        assert emulate(program_layers(prog), xi).rasters[0].sum() > 0  # the conv layer spikes: a real check
    tampered = Program.from_bytes(progs[1].to_bytes())
    tampered.arrays["l0.conv_weight"] = -tampered.arrays["l0.conv_weight"]
    neg = Program.from_bytes(progs[1].to_bytes())
    neg.meta["layers"][0]["weight_exp"] = -1
    res = golden_check_many([*progs, tampered, neg], [*xs, xs[1], xs[1]])
    main, stride2, dilated, pooled, bad, dense = res
    assert main.bit_exact and main.mismatches == 0 and main.layers == 3 and sum(main.per_layer) == 0, main
    assert main.lava_processes == ["Conv", "LIF", "Dense"], main
    assert main.layer_processes == [["Conv", "LIF"], ["Conv", "LIF"], ["Dense", "LIF"]]
    for r in (stride2, dilated, pooled):
        assert r.bit_exact and r.layers == 2 and r.layer_processes[0] == ["Conv", "LIF"], r
    assert "Lava processes Conv, LIF, Dense" in main.summary()
    assert not bad.bit_exact and bad.per_layer[0] > 0 and bad.layer_processes[0] == ["Conv", "LIF"], bad
    assert dense.bit_exact and dense.layer_processes[0] == ["Dense", "LIF"], dense
    assert any("weight_exp -1 < 0" in n for n in dense.notes), dense.notes


# -- layers the exporter refuses ----------------------------------------------------------------------------
@pytest.mark.parametrize("net,msg", [
    (nn.Sequential(nn.Unflatten(1, (2, 4, 4)), nn.Conv2d(2, 2, 3, padding=1), snn.Leaky(beta=0.9, **Z), nn.MaxPool2d(2),
                   nn.Flatten(), nn.Linear(8, 3), snn.Leaky(beta=0.9, output=True, **Z)),
     "layer 3 (MaxPool2d) is not supported by any kind"),
    (nn.Sequential(nn.Conv2d(2, 2, 3), snn.Leaky(beta=0.9, output=True, **Z)),
     "layer 0 (Conv2d) needs a [C, H, W] input but receives [32]; start the model with nn.Unflatten(1, (C, H, W))"),
    (nn.Sequential(nn.Unflatten(1, (2, 4, 4)), nn.Conv2d(3, 2, 3), snn.Leaky(beta=0.9, output=True, **Z)),
     "layer 1 (Conv2d) takes 3 input channels but receives 2"),
    (nn.Sequential(nn.Unflatten(1, (2, 4, 4)), nn.Conv2d(2, 2, 5), snn.Leaky(beta=0.9, output=True, **Z)),
     "layer 1 (Conv2d) kernel [5, 5] does not fit its 4x4 input"),
    (nn.Sequential(nn.Unflatten(1, (2, 4, 5)), nn.Flatten(), nn.Linear(40, 3), snn.Leaky(beta=0.9, output=True, **Z)),
     "layer 0 (Unflatten) gives [2, 4, 5] but the encoded dataset has 32 features"),
    (nn.Sequential(nn.Linear(32, 32), snn.Leaky(beta=0.9, **Z), nn.Unflatten(1, (2, 4, 4)), nn.Flatten(),
                   nn.Linear(32, 3), snn.Leaky(beta=0.9, output=True, **Z)), "layer 2 (Unflatten) must be the first layer"),
    (nn.Sequential(nn.Unflatten(1, (2, 4, 4)), nn.Conv2d(2, 2, 3, padding=1), snn.Leaky(beta=0.9, **Z),
                   nn.Linear(32, 3), snn.Leaky(beta=0.9, output=True, **Z)),
     "layer 3 (Linear) receives a [2, 4, 4] signal; put nn.Flatten() before it"),
    (nn.Sequential(nn.Unflatten(1, (2, 4, 4)), nn.Conv2d(2, 3, 3, padding=1), snn.Leaky(beta=0.9, output=True, **Z)),
     "the model's output is a [3, 4, 4] signal"),
    (nn.Sequential(nn.Unflatten(1, (2, 4, 4)), nn.AvgPool2d(2, padding=1), nn.Flatten(), nn.Linear(18, 3),
                   snn.Leaky(beta=0.9, output=True, **Z)), "layer 1 (AvgPool2d) needs padding=0"),
    (nn.Sequential(nn.Unflatten(1, (2, 4, 4)), nn.Conv2d(2, 2, 3, padding=1), snn.Synaptic(alpha=0.5, beta=0.9,
                   reset_delay=False, **Z), nn.Flatten(), nn.Linear(32, 3), snn.Leaky(beta=0.9, output=True, **Z)),
     "layer 2 (Synaptic) receives a [2, 4, 4] signal"),
    (nn.Sequential(nn.Unflatten(1, (2, 4, 4)), nn.Conv2d(2, 2, 3, padding=1), nn.Flatten()),
     "the Conv2d at layer 1 feeds the output without a neuron"),
])
def test_conv_layer_refusals_name_layer_position_and_limit(net, msg):
    with pytest.raises(UserModelError) as exc:
        check_layers(net, 32, 3)
    assert msg in str(exc.value) and "\n" not in str(exc.value), str(exc.value)
    assert str(exc.value).startswith("invalid spec: model.module: ")


def test_maxpool_refusal_lists_the_supported_layers():
    net = nn.Sequential(nn.Unflatten(1, (2, 4, 4)), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(8, 3),
                        snn.Leaky(beta=0.9, output=True, **Z))
    with pytest.raises(UserModelError, match=r"use AvgPool2d or fabric\.model\.user\.SumPool2d; supported layers: "
                                             r"\['Linear', 'Flatten', .*'Conv2d', 'AvgPool2d', 'SumPool2d', 'Unflatten'\]"):
        check_layers(net, 32, 3)
    assert {"Conv2d", "AvgPool2d", "SumPool2d", "Flatten"} <= set(SUPPORTED_LAYERS)


# -- templates -------------------------------------------------------------------------------------------------
def test_templates_are_user_factories_in_the_spec():
    assert MODEL_TEMPLATES == TEMPLATES
    spec = parse_spec({"name": "c", "dataset": {"name": "dvs_gestures"}, "encoder": {"name": "event_frames"},
                       "model": {"template": "conv_snn", "params": {"channels": [4], "kernel": 3}}})
    assert spec.model.source == "module" and spec.model.module == "fabric.model.templates:conv_snn"
    again = parse_spec(spec.to_dict())
    assert again == spec and again.model.params == {"channels": [4], "kernel": 3}
    lif = parse_spec({"name": "c", "dataset": {"name": "digits"}})
    assert lif.model.source == "template" and lif.model.model_dump()["template"] == "lif_mlp"


@pytest.mark.parametrize("model,match", [
    ({"template": "resnet"}, r"template: unknown template 'resnet'; valid: \['lif_mlp', 'conv_snn', 'recurrent', 'cuba_mlp'\]"),
    ({"template": "conv_snn", "hidden": [8]}, "hidden: not a setting of the conv_snn template"),
    ({"template": "cuba_mlp", "module": "m.py:build"}, "module: not a setting of the cuba_mlp template"),
])
def test_template_spec_refusals(model, match):
    with pytest.raises(SpecError, match=match):
        parse_spec({"name": "c", "dataset": {"name": "digits"}, "model": model})


def test_template_factories_build_checked_networks():
    net = conv_snn((512,), 6, channels=[4, 8], kernel=3, pool=2)
    check_layers(net, 512, 6)
    assert [type(m).__name__ for m in net][:4] == ["Unflatten", "Conv2d", "Leaky", "AvgPool2d"]
    assert net[-2].in_features == 8 * 4 * 4
    sum_net = conv_snn((128,), 3, channels=[2], pool=2, pooling="sum", frame=[2, 8, 8])
    check_layers(sum_net, 128, 3)
    assert isinstance(sum_net[3], SumPool2d)
    strided = conv_snn((256,), 6, channels=[8, 16], pool=1, stride=2, in_channels=1)
    check_layers(strided, 256, 6)
    assert strided[-2].in_features == 16 * 4 * 4 and not any(isinstance(m, nn.AvgPool2d) for m in strided)
    with pytest.raises(ValueError, match="params.stride must be an integer >= 1"):
        conv_snn((256,), 6, stride=0, in_channels=1)
    check_layers(recurrent((12,), 3, hidden=8), 12, 3)
    check_layers(cuba_mlp((12,), 3, hidden=[8, 6]), 12, 3)
    for kwargs, msg in [({"kernel": 2}, "params.kernel must be an odd integer"),
                        ({"pooling": "max"}, "params.pooling must be 'avg' or 'sum'"),
                        ({"channels": [4, 4, 4, 4, 4]}, "cannot be pooled by 2"),
                        ({"frame": [2, 4, 4]}, "params.frame [2, 4, 4] has 32 values, the features are 512")]:
        with pytest.raises(ValueError, match=msg.replace("[", r"\[").replace("]", r"\]")):
            conv_snn((512,), 6, **kwargs)
    with pytest.raises(ValueError, match="100 features are not 2 square frames"):
        conv_snn((100,), 6)


def test_conv_template_trains_and_round_trips(tmp_path):
    from fabric.model.train import train_model

    spec = parse_spec({"name": "t", "dataset": {"name": "digits"}, "seed": 2,
                       "model": {"template": "conv_snn", "params": {"channels": [3], "frame": [2, 4, 4]}},
                       "train": {"epochs": 1, "device": "cpu", "batch_size": 16}})
    rng = np.random.default_rng(0)
    x = (rng.random((32, 6, 32)) < 0.5).astype(np.uint8)
    res = train_model(spec, x, np.arange(32) % 3, 3, progress=False)
    assert isinstance(res.model, SequentialSNN) and res.model.factory == "fabric.model.templates:conv_snn"
    g = export_sequential(res.model.eval())
    xt = torch.as_tensor(x[:8], dtype=torch.float32)
    with torch.no_grad():
        ref, _ = res.model(xt.permute(1, 0, 2))
    rt = make_runtime("cpu")
    rt.load(rt.compile(g))
    np.testing.assert_array_equal(rt.run(x[:8], record_raster=True).raster, ref.permute(1, 0, 2).numpy())


def test_conv_examples_parse_and_build():
    from pathlib import Path

    import yaml

    from fabric.model.user import build_user_model

    root = Path(__file__).resolve().parents[2]
    cnn = parse_spec(yaml.safe_load((root / "examples/gesture_cnn.yaml").read_text()))
    assert cnn.model.module == "fabric.model.templates:conv_snn" and cnn.encoder.params["polarity"] is False
    user = parse_spec(yaml.safe_load((root / "examples/custom_model/conv_spec.yaml").read_text()))
    for spec in (cnn, user):
        ref = spec.model.module.replace("examples/", str(root / "examples") + "/", 1)
        net = build_user_model(ref, spec.model.params, 256, 6, spec.seed)  # 16x16x1 frames, 6 gestures
        types = {type(n).__name__ for n in export_sequential(net).nodes.values()}
        assert "Conv2d" in types and "Flatten" in types
        for kind in ("loihi", "akida", "spinnaker"):
            make_runtime(kind).compile(export_sequential(net))
