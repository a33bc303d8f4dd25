"""The model card (``README.md``) every saved model carries, so its folder uploads to the Hub as is.

``write_model_card(model_dir, run_dir)`` reads what the run directory already records — the
resolved ``config.yaml`` (base model, data, stage settings) and ``metrics.jsonl`` (the last
value of each namespaced metric) — and writes the card with the Hub's YAML metadata
(``base_model``, ``library_name``, ``pipeline_tag``, ``tags``) and a how-to-load snippet.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

DEFAULT_IDS = {  # what `default` stands for, as hub ids
    "policy": "HuggingFaceTB/SmolLM2-135M-Instruct",
    "backbone": "sentence-transformers/all-MiniLM-L6-v2",
}
METRIC_PREFIXES = ("rm/", "eval/", "dpo/", "ppo/", "grpo/", "rloo/")


def _stage(config: dict[str, Any]) -> tuple[str, str]:
    """(stage name, the config key naming the base model)."""
    if "backbone" in config:
        return "reward model", "backbone"
    if "algo" in config:
        return f"RL fine-tuning ({str(config['algo']).upper()})", "policy"
    if "beta" in config:
        return "DPO", "policy"
    return "fine-tuning", "policy"


def _hub_id(name: str, key: str) -> str | None:
    """The hub id a base-model name refers to, or None for a local path."""
    from alignloop.models import HUB_ID

    if name == "default":
        return DEFAULT_IDS[key]
    match = HUB_ID.match(name)
    return match["repo"] if match and not Path(name).exists() else None


def _last_metrics(run_dir: Path) -> dict[str, float]:
    found: dict[str, float] = {}
    path = run_dir / "metrics.jsonl"
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            for key, value in record.items():
                if key.startswith(METRIC_PREFIXES) and isinstance(value, (int, float)) and not isinstance(value, bool):
                    found[key] = float(value)
    return found


def model_card(model_dir: str | Path, run_dir: str | Path) -> str:
    """The text of the card of ``model_dir``, a model saved by the run in ``run_dir``."""
    import yaml

    model_dir, run_dir = Path(model_dir), Path(run_dir)
    config_file = run_dir / "config.yaml"
    config = yaml.safe_load(config_file.read_text(encoding="utf-8")) if config_file.exists() else {}
    config = config if isinstance(config, dict) else {}
    stage, key = _stage(config)
    base = str(config.get(key, "default"))
    base_id = _hub_id(base, key)
    reward = stage == "reward model"
    adapter = (model_dir / "adapter_config.json").exists()
    data = config.get("pairs") or config.get("prompts") or config.get("project") or "(not recorded)"
    tags = ["alignloop", "rlhf", "reward-model" if reward else stage.split()[0].lower()]
    if "algo" in config:
        tags.append(str(config["algo"]))
    meta: dict[str, Any] = {"library_name": "peft" if adapter else "transformers"}
    if base_id:
        meta["base_model"] = base_id
    meta["pipeline_tag"] = "text-classification" if reward else "text-generation"
    meta["tags"] = tags
    metrics = _last_metrics(run_dir)
    rows = "\n".join(f"| `{k}` | {v:.4g} |" for k, v in sorted(metrics.items())) or "| (none recorded) | |"
    if reward:
        load = (
            "from transformers import AutoModelForSequenceClassification, AutoTokenizer\n\n"
            'tokenizer = AutoTokenizer.from_pretrained("PATH_OR_HUB_ID")\n'
            'model = AutoModelForSequenceClassification.from_pretrained("PATH_OR_HUB_ID")  # one output: the reward\n'
            "# or, with alignloop (normalised scores): alignloop.reward.model.RewardModel.load(RUN_DIR)"
        )
    elif adapter:
        load = (
            "from peft import AutoPeftModelForCausalLM\n"
            "from transformers import AutoTokenizer\n\n"
            'model = AutoPeftModelForCausalLM.from_pretrained("PATH_OR_HUB_ID")  # the LoRA adapter on its base\n'
            'tokenizer = AutoTokenizer.from_pretrained("PATH_OR_HUB_ID")'
        )
    else:
        load = (
            "from transformers import AutoModelForCausalLM, AutoTokenizer\n\n"
            'tokenizer = AutoTokenizer.from_pretrained("PATH_OR_HUB_ID")\n'
            'model = AutoModelForCausalLM.from_pretrained("PATH_OR_HUB_ID")'
        )
    front = yaml.safe_dump(meta, sort_keys=False).strip()
    what = "LoRA adapter" if adapter else "model"
    group = config.get("group")  # an RL run for one labeler group (`train-rl --group`)
    for_group = (
        f"\n- **Labeler group:** `{group}`: the policy of that group, rewarded by its head of the per-group "
        f"reward model `{config.get('reward_model')}`"
        if group is not None
        else ""
    )
    return f"""---
{front}
---

# {run_dir.name}

A {what} trained with alignloop (human preferences, end to end) — stage: **{stage}**.

- **Base model:** `{base}`{f" (`{base_id}`)" if base_id and base_id != base else ""}
- **Training data:** `{data}`
- **Stage:** {stage}; the full resolved configuration is the run's `config.yaml`{for_group}

## Metrics

The last value of each metric in the run's `metrics.jsonl`.

| metric | value |
|---|---|
{rows}

## How to load

```python
{load}
```
"""


def write_model_card(model_dir: str | Path, run_dir: str | Path) -> Path:
    """Write ``model_dir/README.md`` (see ``model_card``); returns its path."""
    path = Path(model_dir) / "README.md"
    path.write_text(model_card(model_dir, run_dir), encoding="utf-8")
    return path
