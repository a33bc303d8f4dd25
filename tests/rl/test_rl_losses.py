"""The RL loss math on small examples worked by hand."""

from __future__ import annotations

import math

import pytest
import torch

from alignloop import losses
from alignloop.rl.config import RLConfig
from alignloop.rl.grpo import GRPO
from alignloop.rl.kl import AdaptiveKLController, FixedKLController
from alignloop.rl.raft import RAFT
from alignloop.rl.rollout import Rollout


def t(*rows: list[float]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float32)


def test_gae_with_gamma_and_lambda_one_gives_the_monte_carlo_return_minus_value() -> None:
    advantages, returns = losses.gae(t([0, 0, 1]), t([0.5, 0.5, 0.5]), t([1, 1, 1]), gamma=1.0, lam=1.0)
    assert torch.allclose(advantages, t([0.5, 0.5, 0.5]))
    assert torch.allclose(returns, t([1, 1, 1]))


def test_gae_discounts_td_errors_by_gamma_times_lambda() -> None:
    # δ = [-0.05, -0.05, 0.5]; A2 = 0.5, A1 = -0.05 + 0.45·0.5, A0 = -0.05 + 0.45·A1
    advantages, returns = losses.gae(t([0, 0, 1]), t([0.5, 0.5, 0.5]), t([1, 1, 1]), gamma=0.9, lam=0.5)
    assert torch.allclose(advantages, t([0.02875, 0.175, 0.5]))
    assert torch.allclose(returns, t([0.52875, 0.675, 1.0]))


def test_gae_ignores_values_and_rewards_after_the_end_of_a_completion() -> None:
    # Row ends after two tokens: δ1 = 1 − 0.5 (no bootstrap from the padding's value 9).
    advantages, returns = losses.gae(t([0, 1, 7]), t([0.5, 0.5, 9.0]), t([1, 1, 0]), gamma=1.0, lam=1.0)
    assert torch.allclose(advantages, t([0.5, 0.5, 0.0]))
    assert torch.allclose(returns, t([1.0, 1.0, 0.0]))


def test_whitening_uses_only_real_tokens_and_zeroes_padding() -> None:
    whitened = losses.masked_whiten(t([1, 2, 3, 100]), t([1, 1, 1, 0]))
    assert torch.allclose(whitened, t([-1, 0, 1, 0]), atol=1e-6)
    kept_mean = losses.masked_whiten(t([1, 2, 3, 100]), t([1, 1, 1, 0]), shift_mean=False)
    assert torch.allclose(kept_mean, t([1, 2, 3, 0]), atol=1e-6)


def test_clipped_policy_loss_takes_the_pessimistic_branch() -> None:
    # token 1: ρ = 1.5, A = 1 → clipped to 1.2 → −1.2 (clipped); token 2: ρ = 0.5, A = 1 → −0.5 (unclipped)
    logprobs = t([math.log(1.5), math.log(0.5)])
    loss, clipfrac, approx_kl = losses.clipped_policy_loss(logprobs, t([0, 0]), t([1, 1]), t([1, 1]), clip=0.2)
    assert loss.item() == pytest.approx(-0.85)
    assert clipfrac.item() == pytest.approx(0.5)
    assert approx_kl.item() == pytest.approx(0.5 * (math.log(1.5) ** 2 + math.log(0.5) ** 2) / 2)


def test_clipped_policy_loss_does_not_clip_a_move_away_from_a_bad_action() -> None:
    loss, clipfrac, _ = losses.clipped_policy_loss(t([math.log(1.5)]), t([0]), t([-1]), t([1]), clip=0.2)
    assert loss.item() == pytest.approx(1.5)
    assert clipfrac.item() == 0.0


def test_clipped_value_loss_keeps_the_larger_error() -> None:
    # V = 1 (was 0), R = 2, ε = 0.2: clipped V = 0.2 → ½·max(1, 3.24) = 1.62
    loss, clipfrac = losses.clipped_value_loss(t([1.0]), t([0.0]), t([2.0]), t([1]), clip=0.2)
    assert loss.item() == pytest.approx(1.62)
    assert clipfrac.item() == 1.0


def test_kl_estimators_on_one_token() -> None:
    logp, ref = torch.tensor([math.log(0.5)]), torch.tensor([math.log(0.25)])
    assert losses.kl_estimate(logp, ref, "k1").item() == pytest.approx(math.log(2))
    assert losses.kl_estimate(logp, ref, "k2").item() == pytest.approx(0.5 * math.log(2) ** 2)
    assert losses.kl_estimate(logp, ref, "k3").item() == pytest.approx(-0.5 + math.log(2))
    with pytest.raises(ValueError):
        losses.kl_estimate(logp, ref, "k4")


def test_adaptive_beta_moves_toward_the_target_kl_within_a_few_steps() -> None:
    above = AdaptiveKLController(0.1, target=6.0, horizon=5)
    above.update(12.0)  # error +1 → β·e^0.2
    assert above.value == pytest.approx(0.1 * math.exp(0.2))
    above.update(60.0)  # error clipped to +1
    assert above.value == pytest.approx(0.1 * math.exp(0.4))
    below = AdaptiveKLController(0.1, target=6.0, horizon=5)
    below.update(3.0)  # error −0.5 → β·e^−0.1
    assert below.value == pytest.approx(0.1 * math.exp(-0.1))
    near = AdaptiveKLController(0.1, target=6.0, horizon=5)
    for _ in range(10):
        near.update(6.0)
    assert near.value == pytest.approx(0.1)
    runaway = AdaptiveKLController(0.05, target=2.0, horizon=5)
    for _ in range(20):  # a demo-length run with the KL held at twice the target
        runaway.update(4.0)
    assert runaway.value > 0.05 * 50


def test_adaptive_beta_stops_at_its_floor_so_it_can_hold_an_overshooting_kl_in_time() -> None:
    floored = AdaptiveKLController(0.05, target=3.0, horizon=5, floor=0.01)
    for _ in range(12):  # the first steps of a run: KL far under target
        floored.update(0.1)
    assert floored.value == 0.01
    floored.update(6.0)  # the KL overshoots: β climbs from the floor, not from 0.005
    assert floored.value == pytest.approx(0.01 * math.exp(0.2))
    unfloored = AdaptiveKLController(0.05, target=3.0, horizon=5)
    for _ in range(12):
        unfloored.update(0.1)
    assert unfloored.value < 0.006


def test_fixed_beta_never_changes_and_state_round_trips() -> None:
    fixed = FixedKLController(0.05)
    fixed.update(100.0)
    assert fixed.value == 0.05
    adaptive = AdaptiveKLController(0.1, 6.0, 5)
    adaptive.update(9.0)
    restored = AdaptiveKLController(0.1, 6.0, 5)
    restored.load_state_dict(adaptive.state_dict())
    assert restored.value == adaptive.value


def test_group_advantages_centre_and_scale_within_each_group() -> None:
    advantages = losses.group_advantages(t([1, 2, 3], [5, 5, 5]))
    assert torch.allclose(advantages[0], t([-1, 0, 1]) / (1 + 1e-4))
    assert torch.equal(advantages[1], torch.zeros(3))  # equal rewards: no signal, no division by zero
    assert torch.allclose(losses.group_advantages(t([1, 2, 3]), scale=False), t([-1, 0, 1]))


def test_leave_one_out_baseline_is_the_mean_of_the_other_samples() -> None:
    rewards = t([1, 2, 3])
    baseline = losses.leave_one_out_baseline(rewards)
    assert torch.allclose(baseline, t([2.5, 2.0, 1.5]))
    assert torch.allclose(rewards - baseline, t([-1.5, 0.0, 1.5]))
    with pytest.raises(ValueError):
        losses.leave_one_out_baseline(t([1.0]))


def grpo_rollout(drift: float) -> Rollout:
    """One prompt's two 4-token completions whose log-probs lie ``drift`` nats per token above the reference's."""
    logprobs = torch.full((2, 4), -1.0)
    return Rollout(
        input_ids=torch.zeros(2, 6, dtype=torch.long),
        attention_mask=torch.ones(2, 6, dtype=torch.long),
        position_ids=torch.arange(6).repeat(2, 1),
        completion_ids=torch.zeros(2, 4, dtype=torch.long),
        mask=torch.ones(2, 4),
        logprobs=logprobs,
        ref_logprobs=logprobs - drift,
        values=None,
        entropy=None,
        ended=torch.ones(2, dtype=torch.bool),
        group=torch.zeros(2, dtype=torch.long),
        prompts=["p", "p"],
        completions=["a", "b"],
    )


def grpo_step(algorithm: GRPO, drift: float) -> dict[str, float]:
    """GRPO's advantages on ``grpo_rollout(drift)``: the KL the step's rollout reports."""
    return algorithm.advantages(grpo_rollout(drift), torch.tensor([0.0, 1.0]))


def test_grpo_reports_kl_per_completion_and_its_beta_brakes_only_above_the_target() -> None:
    k3 = math.exp(-0.5) - 1 + 0.5  # per token, log π − log π_ref = 0.5
    fixed = GRPO(RLConfig(algo="grpo", k=2, batch_size=1))
    metrics = grpo_step(fixed, 0.5)
    assert metrics["kl"] == pytest.approx(4 * k3, rel=1e-5)  # summed over the completion's four tokens
    assert metrics["beta"] == 0.04
    adaptive = GRPO(RLConfig(algo="grpo", k=2, batch_size=1, grpo={"target_kl": 0.2, "kl_horizon": 2.0}))
    assert grpo_step(adaptive, 0.1)["beta"] == 0.04  # under target: held at its floor, the start
    metrics = grpo_step(adaptive, 0.5)  # KL 0.43, more than twice the target: error clipped to +1
    assert metrics["beta"] == pytest.approx(0.04 * math.exp(0.5))
    assert GRPO(RLConfig(algo="grpo", k=2, batch_size=1)).state_dict() == {"kl": {"value": 0.04}}


def test_best_in_group_marks_each_groups_winner_and_nothing_in_a_group_without_one() -> None:
    assert torch.equal(losses.best_in_group(t([0.1, 0.7, 0.3], [2.0, 2.0, 2.0], [5.0, 1.0, 5.0])),
                       t([0, 1, 0], [0, 0, 0], [1, 0, 0]))  # fmt: skip


def test_raft_learns_only_each_prompts_best_answer_by_likelihood() -> None:
    algorithm = RAFT(RLConfig(algo="raft", k=2, batch_size=1, raft={"kl_coef": 0.0}))
    rollout = grpo_rollout(drift=0.0)
    algorithm.advantages(rollout, torch.tensor([0.0, 1.0]))
    assert torch.equal(rollout.extras["advantages"], t([0, 0, 0, 0], [1, 1, 1, 1]))
    logprobs = torch.tensor([[-3.0, -3.0, -3.0, -3.0], [-1.0, -2.0, -1.0, -2.0]], requires_grad=True)
    batch = {"logprobs": logprobs.detach(), "advantages": rollout.extras["advantages"], "mask": rollout.mask}
    loss, _ = algorithm.loss({"logprobs": logprobs}, batch)
    assert loss.item() == pytest.approx(-1.0)  # ratio 1: minus the mean advantage over the best answer's tokens
    loss.backward()
    assert torch.equal(logprobs.grad, t([0, 0, 0, 0], [-0.25] * 4))  # the worse answer is not pushed down
