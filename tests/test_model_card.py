"""Every saved model carries a model card: base model, data, stage, metrics and how to load it."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from alignloop.model_card import model_card
from alignloop.records import Comparison


def _front_matter(text: str) -> dict:
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n")[1])


def test_card_of_a_reward_model_names_its_hub_base_data_metrics_and_loading(tmp_path: Path) -> None:
    run = tmp_path / "reward-0"
    (run / "model").mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump({"backbone": "default", "pairs": "pairs.jsonl", "epochs": 3}))
    records = [{"step": 1, "rm/loss": 0.69}, {"step": 2, "rm/loss": 0.5, "rm/eval_accuracy": 0.75}]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    card = model_card(run / "model", run)
    meta = _front_matter(card)
    assert meta["base_model"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert meta["pipeline_tag"] == "text-classification" and "reward-model" in meta["tags"]
    assert "**Training data:** `pairs.jsonl`" in card
    assert "| `rm/eval_accuracy` | 0.75 |" in card and "| `rm/loss` | 0.5 |" in card
    assert "AutoModelForSequenceClassification.from_pretrained" in card


def test_a_local_base_model_is_named_but_not_claimed_as_a_hub_base(tmp_path: Path) -> None:
    run = tmp_path / "rl"
    (run / "model").mkdir(parents=True)
    (run / "model" / "adapter_config.json").write_text("{}")
    (run / "config.yaml").write_text(yaml.safe_dump({"algo": "grpo", "policy": str(tmp_path), "prompts": "p.jsonl"}))
    card = model_card(run / "model", run)
    meta = _front_matter(card)
    assert "base_model" not in meta and meta["library_name"] == "peft" and "grpo" in meta["tags"]
    assert "RL fine-tuning (GRPO)" in card and "AutoPeftModelForCausalLM" in card


def test_reward_and_dpo_runs_save_their_model_with_a_card(tiny_encoder: Path, tiny_lm: Path, tmp_path: Path) -> None:
    from alignloop.reward import RewardConfig, train_reward
    from alignloop.rl.dpo import train_dpo
    from alignloop.rl.dpo_config import DPOConfig

    pairs = [
        Comparison(f"question {i}", "a good kind idea", "the rain", split="test" if i % 4 == 0 else "train")
        for i in range(16)
    ]
    rm = RewardConfig(backbone=str(tiny_encoder), output=str(tmp_path / "rm"), epochs=1, batch_size=8)
    rm_card = (train_reward(rm, pairs=pairs).run_dir / "model" / "README.md").read_text()
    assert str(tiny_encoder) in rm_card and "stage: **reward model**" in rm_card and "rm/" in rm_card
    dpo = DPOConfig(policy=str(tiny_lm), output=str(tmp_path / "dpo"), batch_size=4, max_steps=2, merge_lora=True)
    dpo_card = (train_dpo(dpo, pairs=pairs).run_dir / "model" / "README.md").read_text()
    assert "stage: **DPO**" in dpo_card and "AutoModelForCausalLM.from_pretrained" in dpo_card
    assert _front_matter(dpo_card)["pipeline_tag"] == "text-generation"
