"""The search space from ``spec.search_space``, candidate specs, model compression, and fit pruning.

Everything here is plain Python (no Ray), so a candidate that cannot fit a target kind is refused
in-process from an *untrained* model of its shape (same NIR export, same kind compiler, same
FitError) before any training time is spent on it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from fabric.model.quantize import quantize_symmetric
from fabric.model.snn import LifMLP, export_nir
from fabric.model.user import SequentialSNN, export_sequential
from fabric.records import FitError
from fabric.spec import SearchSpaceSpec, Spec, SpecError

__all__ = ["DEFAULT_SPACE", "FACTORY_DEFAULT_SPACE", "effective_space", "make_space_fn", "candidate_spec", "compress",
           "compile_options", "check_fit", "hidden_key", "parse_hidden", "param_key", "is_structured",
           "compress_trained", "weight_layers"]

# Used when the spec names no search space: small networks around digits/HAR sizes.
DEFAULT_SPACE: dict[str, Any] = {
    "beta": {"low": 0.7, "high": 0.95},
    "threshold": {"low": 0.5, "high": 1.5},
    "hidden": [[16], [32], [16, 16]],
    "weight_bits": [4, 8],
    "sparsity": {"low": 0.0, "high": 0.5},
}
# A factory model (model.module, conv_snn/recurrent/cuba_mlp) has no lif_mlp sizes/leaks: compression only.
FACTORY_DEFAULT_SPACE: dict[str, Any] = {"weight_bits": [4, 8], "sparsity": {"low": 0.0, "high": 0.5}}


def effective_space(spec: Spec) -> SearchSpaceSpec:
    """The spec's search space, or :data:`DEFAULT_SPACE` (:data:`FACTORY_DEFAULT_SPACE` for a
    factory model) when it names none."""
    ss = spec.search_space
    if ss.model_dump():
        return ss
    return SearchSpaceSpec.model_validate(FACTORY_DEFAULT_SPACE if spec.model.source == "module" else DEFAULT_SPACE)


def hidden_key(hidden: Sequence[int]) -> str:
    """Optuna categoricals must be scalars: ``[16, 16]`` <-> ``"16-16"``."""
    return "-".join(str(int(h)) for h in hidden)


def parse_hidden(key: str) -> list[int]:
    return [int(h) for h in str(key).split("-")]


def param_key(choice: Any) -> Any:
    """A ``model_params`` choice as an Optuna categorical (scalars only): scalars as they are, lists
    and mappings as compact JSON (``[4, 8]`` -> ``"[4,8]"``), mapped back by :func:`candidate_spec`."""
    if choice is None or isinstance(choice, bool | int | float | str):
        return choice
    return json.dumps(choice, sort_keys=True, separators=(",", ":"))


def _param_value(spec: Spec, name: str, value: Any) -> Any:
    """The factory argument a trial's ``model.<name>`` config value stands for: the choice whose
    :func:`param_key` it is (a list choice comes back as the list), or the sampled number."""
    r = (spec.search_space.model_params or {}).get(name)
    if isinstance(r, list):
        for choice in r:
            if param_key(choice) == value:
                return choice
        raise SpecError([(f"config.model.{name}", f"{value!r} is not one of the search space's choices {r}")],
                        "candidate")
    if isinstance(value, str) and value[:1] in ("[", "{"):  # a stored config read without its search space
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


class _SpaceFn:
    """Optuna define-by-run space over a :class:`SearchSpaceSpec`: a picklable callable, because
    Tune checkpoints the searcher (and with it this function) for ``resume``."""

    def __init__(self, space: SearchSpaceSpec, default_hidden: Sequence[int] = (64,)) -> None:
        self.space = space.model_dump()
        self.default_hidden = [int(h) for h in default_hidden]

    @staticmethod
    def _range(trial: Any, name: str, r: Any) -> None:
        if isinstance(r, list):
            trial.suggest_categorical(name, r)
        else:
            trial.suggest_float(name, r["low"], r["high"], log=bool(r.get("log", False)))

    def __call__(self, trial: Any) -> None:
        s = self.space
        if s.get("timesteps"):
            trial.suggest_categorical("timesteps", list(s["timesteps"]))
        for k, r in sorted((s.get("encoder_params") or {}).items()):
            self._range(trial, f"encoder.{k}", r)
        for name in ("beta", "threshold", "sparsity", "lr", "rate_reg", "exit_reg"):
            if s.get(name) is not None:
                self._range(trial, name, s[name])
        for name in ("encoder", "sparsity_kind", "early_exit_patience"):
            if s.get(name):
                trial.suggest_categorical(name, list(s[name]))
        if s.get("hidden"):
            trial.suggest_categorical("hidden", [hidden_key(h) for h in s["hidden"]])
        if s.get("weight_bits"):
            trial.suggest_categorical("weight_bits", list(s["weight_bits"]))
        if s.get("state_bits"):
            trial.suggest_categorical("state_bits", list(s["state_bits"]))
        # per-layer leak / threshold: one value per layer of this trial's network (hidden layers + output),
        # sampled last so that spaces without them sample exactly as before
        if s.get("layer_beta") or s.get("layer_threshold"):
            hidden = trial.params["hidden"] if "hidden" in trial.params else self.default_hidden
            n_layers = len(parse_hidden(hidden) if isinstance(hidden, str) else hidden) + 1
            for name in ("beta", "threshold"):
                if s.get(f"layer_{name}"):
                    for i in range(n_layers):
                        self._range(trial, f"{name}.{i}", s[f"layer_{name}"])
        # a factory's keyword arguments (model.params), also last and in name order
        for k, r in sorted((s.get("model_params") or {}).items()):
            name = f"model.{k}"
            if isinstance(r, list):
                trial.suggest_categorical(name, [param_key(c) for c in r])
            elif isinstance(r["low"], int) and isinstance(r["high"], int):
                trial.suggest_int(name, r["low"], r["high"], log=bool(r.get("log", False)))
            else:
                trial.suggest_float(name, float(r["low"]), float(r["high"]), log=bool(r.get("log", False)))


def make_space_fn(space: SearchSpaceSpec, default_hidden: Sequence[int] = (64,)) -> Callable[[Any], None]:
    """An Optuna define-by-run function sampling every field the space names (flat config keys).

    ``default_hidden`` (the spec's ``model.hidden``) sizes the per-layer ``beta.i`` / ``threshold.i``
    keys when the space does not choose ``hidden`` itself."""
    return _SpaceFn(space, default_hidden)


def candidate_spec(spec: Spec, config: dict[str, Any]) -> Spec:
    """The spec a trial trains: ``spec`` with ``config``'s values applied (validated like any spec)."""
    d = spec.to_dict()
    d["search_space"] = {}
    # sparsity, sparsity_kind and weight_bits act after training (compress), not on the spec
    known = {"timesteps", "beta", "threshold", "sparsity", "lr", "hidden", "weight_bits", "sparsity_kind"}
    if "encoder" in config and config["encoder"] != d["encoder"]["name"]:
        d["encoder"] = {**d["encoder"], "name": str(config["encoder"]), "params": {}}  # the choice's defaults
    for key, value in config.items():
        if key.startswith("encoder."):
            d["encoder"]["params"] = {**d["encoder"]["params"], key.split(".", 1)[1]: value}
        elif key.startswith("model."):
            name = key.split(".", 1)[1]
            if spec.model.source != "module":
                raise SpecError([(f"config.{key}", f"model params are searched for model.module models, not a "
                                  f"model.{spec.model.source} model")], "candidate")
            d["model"]["params"] = {**d["model"]["params"], name: _param_value(spec, name, value)}
        elif key == "timesteps":
            d["encoder"]["timesteps"] = int(value)
        elif key in ("beta", "threshold"):
            d["model"][key] = float(value)
        elif key == "hidden":
            d["model"]["hidden"] = parse_hidden(value) if isinstance(value, str) else list(value)
        elif key in ("lr", "rate_reg", "exit_reg"):
            d["train"][key] = float(value)
        elif key == "early_exit_patience":
            d["early_exit"] = {**d["early_exit"], "patience": int(value)}
        elif key == "encoder":
            pass  # applied above
        elif key == "state_bits":
            d["compress"] = {**d["compress"], "state_bits": int(value)}
        elif key.partition(".")[0] in ("beta", "threshold") and key.partition(".")[2].isdigit():
            pass  # per-layer values: applied below, as one list per name
        elif key not in known:
            raise SpecError([(f"config.{key}", "not a search-space parameter")], "candidate")
    for name in ("beta", "threshold"):
        idx = sorted(int(k.partition(".")[2]) for k in config if k.partition(".")[0] == name and "." in k)
        if idx:
            if idx != list(range(len(idx))):
                raise SpecError([(f"config.{name}.*", f"per-layer keys must be {name}.0 .. {name}.N, got {idx}")],
                                "candidate")
            d["model"].pop(name, None)  # the list replaces the one value
            d["model"][f"{name}s"] = [float(config[f"{name}.{i}"]) for i in idx]
    return Spec.from_dict(d, "candidate")


def weight_layers(model: LifMLP | SequentialSNN) -> list[torch.nn.Module]:
    """The layers whose weights compression prunes and quantizes: a LifMLP's ``fcs``; every Linear and
    Conv2d of a factory model (an ``RLeaky``'s recurrent Linear included), in module order."""
    if isinstance(model, LifMLP):
        return list(model.fcs)
    return [m for m in model.modules() if isinstance(m, torch.nn.Linear | torch.nn.Conv2d)]


def compress(model: LifMLP | SequentialSNN, weight_bits: int | None = None, sparsity: float | None = None,
             structured: bool = False) -> LifMLP | SequentialSNN:
    """Prune the smallest ``sparsity`` fraction of each layer's weights (``structured``: that fraction
    of each hidden layer's neurons instead, lowest L1 norm first, with
    :func:`fabric.model.compress.structured_prune`; a smaller model is returned), then quantize symmetrically
    with the fabric's one quantizer (:func:`fabric.model.quantize.quantize_symmetric`, the grid QAT
    uses too; pruned zeros stay zero at every precision, 1 bit included).

    Done in place on the float model before NIR export, so every kind sees the compressed weights
    and the measured accuracy includes the compression loss. A factory model (:func:`weight_layers`)
    takes unstructured sparsity and weight bits; structured pruning is the lif_mlp template's only.
    """
    if structured and sparsity:
        if not isinstance(model, LifMLP):
            raise ValueError("sparsity_kind: 'structured' works on the lif_mlp template only, not a factory model")
        from fabric.model.compress import structured_prune

        model, sparsity = structured_prune(model, float(sparsity)), None
    with torch.no_grad():
        for fc in weight_layers(model):
            w = fc.weight
            if sparsity:
                k = int(round(float(sparsity) * w.numel()))
                if k > 0:
                    thr = w.abs().flatten().kthvalue(k).values
                    w[w.abs() <= thr] = 0.0
            if weight_bits:
                w.copy_(quantize_symmetric(w, weight_bits, field="weight_bits"))
    return model


def compress_trained(model: LifMLP | SequentialSNN, config: dict[str, Any], cand: Spec, spikes: np.ndarray,
                     labels: np.ndarray) -> LifMLP | SequentialSNN:
    """What a trial (and each of its repeats) deploys: :func:`compress` of the trained ``model``, then,
    when the config picks ``state_bits``, a fine-tune with every membrane held at that precision
    (:class:`fabric.model.compress.StateQuantized`, ``compress.finetune_epochs`` at ``finetune_lr`` on
    the train split ``spikes``/``labels``) that keeps pruned weights at zero and weights on the
    ``weight_bits`` grid. The device kinds run their own state width (the NIR graph carries none),
    so ``state_bits`` changes the weights a trial trains, measured on every kind as usual."""
    model = compress(model, config.get("weight_bits"), config.get("sparsity"), is_structured(config))
    if not config.get("state_bits"):
        return model
    from fabric.model.compress import StateQuantized, base_model, finetune

    masks = ({i: (fc.weight.detach() != 0).float() for i, fc in enumerate(model.fcs)}
             if config.get("sparsity") and not is_structured(config) else None)
    wrapped, _ = finetune(StateQuantized(model, int(config["state_bits"])), spikes, labels,
                          epochs=cand.compress.finetune_epochs, lr=cand.compress.finetune_lr, seed=cand.seed,
                          batch_size=cand.train.batch_size, masks=masks, qat_bits=config.get("weight_bits"),
                          desc=f"state {config['state_bits']}-bit")
    return base_model(wrapped)


def compile_options(kind: str, config: dict[str, Any]) -> dict[str, Any]:
    """Compile options a kind takes from the config (``weight_bits`` where the kind has that option)."""
    from fabric.kinds import runtime_class

    doc = getattr(runtime_class(kind), "options_doc", {}) or {}
    return {"weight_bits": int(config["weight_bits"])} if "weight_bits" in config and "weight_bits" in doc else {}


_RUNTIMES: dict[str, Any] = {}


def _runtime(kind: str) -> Any:
    from fabric.kinds import make_runtime

    if kind not in _RUNTIMES:
        _RUNTIMES[kind] = make_runtime(kind, device_id=f"{kind}-fitcheck")
    return _RUNTIMES[kind]


def check_fit(cand: Spec, config: dict[str, Any], n_in: int, n_out: int, kinds: Sequence[str]) -> dict[str, str | None]:
    """Compile an untrained model of the candidate's shape for each kind: kind -> None (fits) or the reason.

    The reason is the kind's FitError (violated limits) or its one-line refusal of the graph.
    """
    from fabric.model.train import build_model

    model = compress(build_model(cand, n_in, n_out), config.get("weight_bits"), config.get("sparsity"),
                     is_structured(config))
    meta = {"timesteps": cand.encoder.timesteps}
    graph = (export_sequential(model, metadata=meta) if isinstance(model, SequentialSNN)
             else export_nir(model, metadata=meta))
    out: dict[str, str | None] = {}
    for kind in kinds:
        try:
            _runtime(kind).compile(graph, compile_options(kind, config))
            out[kind] = None
        except FitError as exc:
            out[kind] = " ".join(str(exc).split())
        except ValueError as exc:  # unsupported node / option refused by the kind
            out[kind] = " ".join(str(exc).split())
    return out


def is_structured(config: dict[str, Any]) -> bool:
    """Whether a trial's ``sparsity`` removes whole neurons (``sparsity_kind: structured``)."""
    return config.get("sparsity_kind") == "structured"


def weight_sparsity(model: LifMLP | SequentialSNN) -> float:
    """Fraction of zero weights (what ``sparsity`` achieved after quantization)."""
    ws = [fc.weight.detach().cpu().numpy() for fc in weight_layers(model)]
    return float(sum(int(np.count_nonzero(w == 0)) for w in ws) / max(1, sum(w.size for w in ws)))
