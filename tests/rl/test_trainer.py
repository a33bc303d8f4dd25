"""RL training on the tiny random LM: learning, stopping, resume, rewards, divergence, run-directory layout."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from alignloop.errors import AlignloopError, TrainingDiverged
from alignloop.rl.config import RLConfig
from alignloop.rl.trainer import train_rl

REWARDS = Path(__file__).parent / "rewards_for_tests.py"

SPACES = f"{REWARDS}:space_fraction"


def make_config(policy: Path, prompt_file: Path, out: Path, **fields: object) -> RLConfig:
    base: dict[str, object] = dict(
        policy=str(policy), reward_model=SPACES, prompts=str(prompt_file), output=str(out),
        batch_size=4, max_new_tokens=6, save_every=100, sample_every=1,
    )  # fmt: skip
    base.update(fields)
    return RLConfig.model_validate(base)


def weights(directory: Path) -> dict[str, torch.Tensor]:
    tensors: dict[str, torch.Tensor] = {}
    for file in sorted(directory.glob("*.safetensors")):
        tensors.update(load_file(file))
    return tensors


def rewards(run_dir: Path, ns: str) -> list[float]:
    return [json.loads(line)[f"{ns}/reward_mean"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def assert_parameters_changed(before: dict[str, torch.Tensor], after: dict[str, torch.Tensor]) -> None:
    shared = [k for k in before if k in after and before[k].shape == after[k].shape]
    assert shared, "no comparable weights"
    changed = [k for k in shared if not torch.equal(before[k], after[k])]
    assert len(changed) >= len(shared) // 2, f"only {len(changed)} of {len(shared)} tensors changed"


LEARNING = {
    "ppo": dict(
        batch_size=16,
        max_steps=15,
        learning_rate=3e-3,
        ppo=dict(epochs=2, minibatch_size=8, target_kl=None, kl_coef=0.02),
    ),
    "grpo": dict(batch_size=4, k=4, max_steps=12, learning_rate=1e-2),
    "rloo": dict(batch_size=4, k=4, max_steps=12, learning_rate=1e-2),
    "raft": dict(batch_size=4, k=4, max_steps=12, learning_rate=1e-2),
}


# PPO learns from one completion per prompt and a critic that starts at zero, so it needs the most
# steps; it is marked slow (CI runs it) to keep the quick test run short.
@pytest.mark.parametrize("algo", [pytest.param("ppo", marks=pytest.mark.slow), "grpo", "rloo", "raft"])
def test_full_fine_tuning_raises_the_reward_with_a_bounded_kl(
    algo: str, tiny_lm: Path, prompts_file: Path, tmp_path: Path
) -> None:
    config = make_config(
        tiny_lm, prompts_file, tmp_path / "run", algo=algo, lora_r=0, max_new_tokens=8, **LEARNING[algo]
    )
    result = train_rl(config)
    curve = rewards(result.run_dir, algo)
    assert len(curve) == config.max_steps
    first, last = sum(curve[:4]) / 4, sum(curve[-4:]) / 4
    assert last > first + 0.08, f"reward did not rise: {curve}"
    final_kl = result.final_metrics[f"{algo}/kl"]
    assert abs(final_kl) < 25.0, f"KL to the reference ran away: {final_kl}"
    assert_parameters_changed(weights(tiny_lm), weights(result.model_dir))


def test_several_updates_per_rollout_take_the_policy_scores_from_a_float32_sampler(
    tiny_lm: Path, prompts_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No scoring pass for the policy when its sampler ran the same weights in the same precision."""
    from alignloop.rl import rollout

    asked: list[bool] = []
    score = rollout.score_tokens

    def recorded(*args: object, need_policy: bool = True, **kwargs: object) -> dict[str, torch.Tensor]:
        asked.append(need_policy)
        return score(*args, need_policy=need_policy, **kwargs)

    monkeypatch.setattr(rollout, "score_tokens", recorded)
    config = make_config(
        tiny_lm, prompts_file, tmp_path / "run", algo="ppo", max_steps=2, dtype="float32",
        ppo=dict(epochs=2, minibatch_size=2),
    )  # fmt: skip
    result = train_rl(config)
    assert asked == [False, False]
    steps = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    steps = [record for record in steps if "ppo/reward_mean" in record]
    assert len(steps) == 2
    for record in steps:  # the gap measured on the first minibatch, the entropy and values from the sampler
        assert 0 <= record["ppo/logprob_gap"] < 1e-4 and record["ppo/entropy"] > 0
        assert record["ppo/value_mean"] == record["ppo/value_mean"]  # not NaN


def test_an_epoch_takes_the_groups_in_a_random_order_each_groups_rows_together() -> None:
    from alignloop.rl.trainer import group_order

    group = torch.arange(5).repeat_interleave(3)  # 5 prompts × 3 completions, rows contiguous per prompt
    orders = [group_order(group, torch.Generator().manual_seed(seed)) for seed in range(4)]
    for order in orders:
        assert sorted(order.tolist()) == list(range(15))
        runs = group[order].view(5, 3)  # the groups, in the epoch's order
        assert (runs == runs[:, :1]).all() and len(set(runs[:, 0].tolist())) == 5
    assert len({tuple(order.tolist()) for order in orders}) > 1
    # one row per prompt (PPO's k = 1): the same permutation as shuffling the rows themselves
    rows = torch.arange(7)
    assert torch.equal(
        group_order(rows, torch.Generator().manual_seed(3)),
        torch.randperm(7, generator=torch.Generator().manual_seed(3)),
    )


def test_minibatches_of_whole_groups_run_each_prompt_once(
    tiny_lm: Path, prompts_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """GRPO with several minibatches per rollout: a minibatch of k rows holds one prompt's completions."""
    from alignloop.rl import trainer

    prompts_per_minibatch: list[int] = []
    forward = trainer._forward

    def recorded(model: object, batch: dict, *args: object, **kwargs: object) -> dict[str, torch.Tensor]:
        width = batch["input_ids"].shape[1] - batch["completion_ids"].shape[1]
        prompts_per_minibatch.append(len({tuple(row[:width].tolist()) for row in batch["input_ids"]}))
        return forward(model, batch, *args, **kwargs)

    monkeypatch.setattr(trainer, "_forward", recorded)
    config = make_config(
        tiny_lm, prompts_file, tmp_path / "run", algo="grpo", batch_size=3, k=4, max_steps=2,
        grpo=dict(epochs=2, minibatch_size=4),
    )  # fmt: skip
    train_rl(config)
    assert prompts_per_minibatch == [1] * 12  # 2 steps × 2 epochs × 3 minibatches


def test_run_directory_has_metrics_samples_plots_config_and_model(
    tiny_lm: Path, prompts_file: Path, tmp_path: Path
) -> None:
    config = make_config(tiny_lm, prompts_file, tmp_path / "run", max_steps=2, save_every=1)
    result = train_rl(config)
    assert result.stop_reason == "max_steps" and result.steps == 2
    record = json.loads((result.run_dir / "metrics.jsonl").read_text().splitlines()[-1])
    for name in ("reward_mean", "reward_std", "kl", "beta", "entropy", "policy_loss", "value_loss", "clipfrac",
                 "approx_kl", "response_length"):  # fmt: skip
        assert f"ppo/{name}" in record, name
    for name in ("time/generate", "time/score", "time/learn", "perf/tokens_per_s"):
        assert record[name] >= 0
    assert (result.run_dir / "config.yaml").exists()
    assert (result.run_dir / "plots" / "reward.png").exists() and (result.run_dir / "plots" / "kl.png").exists()
    samples = [json.loads(line) for line in (result.run_dir / "samples.jsonl").read_text().splitlines()]
    assert {s["step"] for s in samples} == {1, 2} and all(isinstance(s["completion"], str) for s in samples)
    assert (result.model_dir / "adapter_config.json").exists() and (
        result.model_dir / "value_head.safetensors"
    ).exists()
    summary = json.loads((result.run_dir / "summary.json").read_text())
    assert summary["stop_reason"] == "max_steps"
    lora = weights(result.model_dir)
    assert any("lora_B" in k and k and lora[k].abs().sum() > 0 for k in lora), (
        "LoRA B matrices start at 0 and must train"
    )


def test_merged_lora_model_loads_as_a_plain_causal_lm(tiny_lm: Path, prompts_file: Path, tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM

    result = train_rl(
        make_config(
            tiny_lm,
            prompts_file,
            tmp_path / "run",
            algo="grpo",
            k=2,
            max_steps=1,
            merge_lora=True,
            learning_rate=1e-2,
        )
    )
    model = AutoModelForCausalLM.from_pretrained(result.model_dir)
    assert not any("lora" in name for name, _ in model.named_parameters())
    assert_parameters_changed(
        {k: v for k, v in weights(tiny_lm).items() if "q_proj" in k or "v_proj" in k},
        {k: v for k, v in weights(result.model_dir).items() if "q_proj" in k or "v_proj" in k},
    )


def test_stops_when_the_moving_average_reward_reaches_the_target(
    tiny_lm: Path, prompts_file: Path, tmp_path: Path
) -> None:
    result = train_rl(make_config(tiny_lm, prompts_file, tmp_path / "run", target_reward=-5.0, window=3, max_steps=50))
    assert result.stop_reason == "target_reward"
    assert result.steps == 3  # the first moment a full window exists


def test_stops_after_max_time(tiny_lm: Path, prompts_file: Path, tmp_path: Path) -> None:
    result = train_rl(make_config(tiny_lm, prompts_file, tmp_path / "run", max_time=0.01, max_steps=50))
    assert result.stop_reason == "max_time" and result.steps == 1


def test_resume_continues_exactly_like_an_uninterrupted_run(tiny_lm: Path, prompts_file: Path, tmp_path: Path) -> None:
    fields = dict(max_steps=4, save_every=2, learning_rate=5e-3, ppo=dict(target_kl=1.0, minibatch_size=2))
    straight = train_rl(make_config(tiny_lm, prompts_file, tmp_path / "straight", **fields))
    interrupted = make_config(tiny_lm, prompts_file, tmp_path / "resumed", **{**fields, "max_steps": 2})
    train_rl(interrupted)
    resumed = train_rl(interrupted.model_copy(update={"max_steps": 4}), resume=True)
    assert resumed.steps == 4
    a, b = weights(straight.model_dir), weights(resumed.model_dir)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert rewards(straight.run_dir, "ppo") == rewards(resumed.run_dir, "ppo")
    beta = [json.loads(line)["ppo/beta"] for line in (resumed.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert beta[3] != beta[0], "the adaptive KL controller's state must survive the resume"


def test_an_existing_run_is_not_overwritten_without_asking(tiny_lm: Path, prompts_file: Path, tmp_path: Path) -> None:
    config = make_config(tiny_lm, prompts_file, tmp_path / "run", max_steps=1)
    train_rl(config)
    with pytest.raises(AlignloopError, match="--resume"):
        train_rl(config)


def test_reward_model_with_another_tokenizer_scores_decoded_text(
    tiny_lm: Path, encoder_reward_run: Path, prompts_file: Path, tmp_path: Path
) -> None:
    result = train_rl(
        make_config(tiny_lm, prompts_file, tmp_path / "run", reward_model=str(encoder_reward_run), max_steps=2)
    )
    curve = rewards(result.run_dir, "ppo")
    assert len(curve) == 2 and len(set(curve)) == 2  # real, varying scores from the BERT reward model
    assert result.final_metrics["ppo/reward_std"] > 0


def test_weighted_sum_of_a_reward_model_and_a_function(
    tiny_lm: Path, encoder_reward_run: Path, prompts_file: Path, tmp_path: Path
) -> None:
    from alignloop.rl.rewards import load_reward

    spec = f"0.5*{encoder_reward_run}+2*{SPACES}"
    combined = load_reward(spec)
    rm, spaces = load_reward(str(encoder_reward_run)), load_reward(SPACES)
    prompts, completions = ["Say hi", "Say hi"], ["hello there my friend", "hi"]
    expected = [0.5 * a + 2 * b for a, b in zip(rm(prompts, completions), spaces(prompts, completions))]
    assert combined(prompts, completions) == pytest.approx(expected)


def test_critic_initialised_from_a_reward_model_with_the_policys_tokenizer(
    tiny_lm: Path, decoder_reward_run: Path, encoder_reward_run: Path, prompts_file: Path, tmp_path: Path
) -> None:
    config = make_config(
        tiny_lm,
        prompts_file,
        tmp_path / "run",
        reward_model=str(decoder_reward_run),
        max_steps=1,
        ppo=dict(critic="reward_model"),
    )
    result = train_rl(config)
    assert "ppo/value_loss" in result.final_metrics
    refused = make_config(
        tiny_lm,
        prompts_file,
        tmp_path / "run2",
        reward_model=str(encoder_reward_run),
        max_steps=1,
        ppo=dict(critic="reward_model"),
    )
    with pytest.raises(AlignloopError, match="different tokenizer"):
        train_rl(refused)


def test_nan_reward_stops_with_a_clear_message_and_keeps_the_last_good_checkpoint(
    tiny_lm: Path, prompts_file: Path, tmp_path: Path
) -> None:
    config = make_config(
        tiny_lm,
        prompts_file,
        tmp_path / "run",
        reward_model=f"{REWARDS}:nan_after_eight_calls",
        save_every=1,
        max_steps=10,
    )
    with pytest.raises(TrainingDiverged, match="step 3: reward .* non-finite") as caught:
        train_rl(config)
    assert "step-00000002" in str(caught.value)
    run = tmp_path / "run"
    assert (run / "checkpoints" / "latest").read_text() == "step-00000002"
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 2


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (dict(prompts=None), "--prompts FILE or --project"),
        (dict(reward_model="no_such_module_xyz:f"), "cannot import reward module"),
        (dict(reward_model="/nonexistent/run"), "neither a reward-model run directory"),
        (dict(batch_size=3, algo="grpo"), None),
    ],
)
def test_bad_runs_are_refused_with_an_actionable_message(
    fields: dict, message: str | None, tiny_lm: Path, prompts_file: Path, tmp_path: Path
) -> None:
    if message is None:
        with pytest.raises(ValueError, match="at least 2"):
            make_config(tiny_lm, prompts_file, tmp_path / "run", k=1, **fields)
        return
    with pytest.raises(AlignloopError, match=message):
        train_rl(make_config(tiny_lm, prompts_file, tmp_path / "run", max_steps=1, **fields))


def test_project_train_prompts_are_used(tiny_lm: Path, project_dir: Path) -> None:
    from alignloop.project import open_project
    from alignloop.store import Prompt

    handle = open_project(project_dir)
    with handle.store.session() as s:
        s.add(Prompt(project_id=handle.project_id, text="Train prompt about the sea", text_hash="a", split="train"))
        s.add(Prompt(project_id=handle.project_id, text="Held-out prompt", text_hash="b", split="test"))
    handle.close()
    config = RLConfig(
        merge_lora=True,
        policy=str(tiny_lm),
        reward_model=SPACES,
        project=str(project_dir),
        batch_size=2,
        max_new_tokens=4,
        max_steps=1,
        sample_every=1,
    )
    result = train_rl(config)
    assert result.run_dir == project_dir / "runs" / "ppo-1"
    samples = [json.loads(line) for line in (result.run_dir / "samples.jsonl").read_text().splitlines()]
    assert {s["prompt"] for s in samples} == {"Train prompt about the sea"}
    from alignloop import rounds

    handle = open_project(project_dir)
    try:
        assert rounds.latest_trained_policy(handle) == str(result.model_dir)  # the next round samples from it
    finally:
        handle.close()


def test_a_prompt_longer_than_the_policys_context_is_refused(tiny_lm: Path, tmp_path: Path) -> None:
    long_prompt = tmp_path / "long.jsonl"
    long_prompt.write_text(json.dumps({"prompt": "alpha beta gamma " * 300}) + "\n", encoding="utf-8")
    with pytest.raises(AlignloopError, match="exceeds the policy's context of 512"):
        train_rl(make_config(tiny_lm, long_prompt, tmp_path / "run", max_steps=1))
