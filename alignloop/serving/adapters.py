"""Labeler groups' LoRA adapters served on one copy of the base policy.

A group's policy (``train-rl --group``) is a LoRA adapter trained on the pooled policy, which is
also the model the server answers everyone else with. Loaded as a model of its own, each adapter
would hold the base weights once more per group. Instead the server keeps one model and, before
answering for a group, writes that group's adapted projections into it, W + s·B·A with
s = alpha / r (alpha / √r under rsLoRA), and writes the base weights back before answering for
the main model. A switch costs one small matrix product per adapted module (r is 16 by default);
the server answers one request at a time on a shared model anyway, so one lock covers the switch
and the sampling.

Only plain LoRA adapters are shared this way: an adapter with DoRA, trained biases, extra saved
modules or per-module ranks is loaded as a model of its own, as before.
"""

from __future__ import annotations

import json
import math
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from alignloop.errors import AlignloopError
from alignloop.models import PEFT_PREFIX

if TYPE_CHECKING:
    import torch
    from torch import nn

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"


@dataclass
class LoraAdapter:
    """One saved LoRA adapter: per adapted module (its name in the plain model), the factors A (r × in),
    B (out × r) and the scale s, so that the adapted weight is W + s·B·A."""

    base: str  # the model it was trained on (``base_model_name_or_path``)
    factors: dict[str, tuple[torch.Tensor, torch.Tensor, float]]


def is_adapter(directory: str | Path) -> bool:
    return (Path(directory) / ADAPTER_CONFIG).is_file()


def read_adapter(directory: str | Path) -> LoraAdapter | None:
    """The adapter saved in ``directory``, or None where it is not a plain LoRA adapter (see the module docstring)."""
    from safetensors.torch import load_file

    directory = Path(directory)
    config = json.loads((directory / ADAPTER_CONFIG).read_text())
    weights_file = directory / ADAPTER_WEIGHTS
    plain = (
        config.get("peft_type", "LORA") == "LORA"
        and not config.get("use_dora")
        and config.get("bias", "none") == "none"
        and not config.get("modules_to_save")
        and not config.get("rank_pattern")
        and not config.get("alpha_pattern")
        and not config.get("fan_in_fan_out")
        and weights_file.is_file()
    )
    if not plain:
        return None
    r, alpha = int(config["r"]), float(config["lora_alpha"])
    scale = alpha / math.sqrt(r) if config.get("use_rslora") else alpha / r
    weights = load_file(str(weights_file))
    factors = {}
    for key, a in weights.items():
        if not key.endswith(".lora_A.weight"):
            continue
        b = weights.get(key.replace(".lora_A.", ".lora_B."))
        if b is None:
            return None
        module = key.removeprefix(PEFT_PREFIX).removesuffix(".lora_A.weight")
        factors[module] = (a, b, scale)
    return LoraAdapter(str(config.get("base_model_name_or_path") or ""), factors)


class SharedBase:
    """One model and the adapters that take turns on it; ``activate(name)`` before sampling, under ``lock``."""

    def __init__(self, model: nn.Module) -> None:
        self.lock = threading.Lock()
        self.adapters: dict[str, LoraAdapter] = {}
        self._modules = dict(model.named_modules())
        self._base: dict[str, torch.Tensor] = {}  # the base weight of every module some adapter changes
        self.active: str | None = None

    def add(self, name: str, adapter: LoraAdapter) -> None:
        """Register ``adapter`` as ``name``; refused when it names modules or shapes this model does not have."""
        for module_name, (a, b, _) in adapter.factors.items():
            module = self._modules.get(module_name)
            weight = getattr(module, "weight", None)
            if weight is None or tuple(weight.shape) != (b.shape[0], a.shape[1]):
                raise AlignloopError(f"adapter {name!r} does not fit the served model at {module_name!r}")
        factors = {}
        for module_name, (a, b, scale) in adapter.factors.items():
            weight = self._modules[module_name].weight
            if module_name not in self._base:
                self._base[module_name] = weight.detach().clone()
            factors[module_name] = (a.to(weight.device), b.to(weight.device), scale)
        self.adapters[name] = LoraAdapter(adapter.base, factors)

    def activate(self, name: str | None) -> None:
        """Make the model the base (``None``) or the base with adapter ``name`` merged in."""
        import torch

        if name == self.active:
            return
        with torch.no_grad():
            if self.active is not None:
                for module_name in self.adapters[self.active].factors:
                    self._modules[module_name].weight.copy_(self._base[module_name])
                self.active = None
            if name is not None:
                for module_name, (a, b, scale) in self.adapters[name].factors.items():
                    base = self._base[module_name]
                    merged = base.float() + scale * (b.float() @ a.float())
                    self._modules[module_name].weight.copy_(merged.to(base.dtype))
        self.active = name
