"""Every loss in ``losses.py`` on small examples worked by hand: the reward model's pairwise loss,
the RL advantages, policy and value losses and KL estimators, and DPO."""

from __future__ import annotations

import math

import pytest
import torch

from alignloop import losses


def t(*rows: list[float]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float32)


def test_hard_labels_are_bradley_terry_and_the_margin_shifts_the_difference() -> None:
    chosen, rejected = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 0.0])
    expected = (math.log1p(math.exp(-1.0)) + math.log(2.0)) / 2
    assert losses.pairwise_loss(chosen, rejected).item() == pytest.approx(expected)
    shifted = losses.pairwise_loss(chosen, rejected, margin=torch.tensor([1.0, 0.0])).item()
    assert shifted == pytest.approx(math.log(2.0))


def test_soft_labels_are_the_cross_entropy_against_the_labelers_share() -> None:
    delta = torch.tensor([math.log(2.0)])  # σ(Δ) = 2/3
    two_of_three = losses.pairwise_loss(delta, torch.zeros(1), target=torch.tensor([2 / 3]))
    p = 2 / 3
    assert two_of_three.item() == pytest.approx(-(p * math.log(p) + (1 - p) * math.log(1 - p)))
    # the soft loss is smallest where σ(Δ) equals the share: a 2-of-3 pair is not pushed to certainty
    deltas = torch.linspace(-3, 3, 601, requires_grad=True)
    loss_at = torch.stack([losses.pairwise_loss(d[None], torch.zeros(1), target=torch.tensor([p])) for d in deltas])
    assert deltas[loss_at.argmin()].item() == pytest.approx(math.log(2.0), abs=0.01)
    unanimous = losses.pairwise_loss(delta, torch.zeros(1), target=torch.ones(1))
    assert unanimous.item() == pytest.approx(losses.pairwise_loss(delta, torch.zeros(1)).item())


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


def test_best_in_group_marks_each_groups_winner_and_nothing_in_a_group_without_one() -> None:
    assert torch.equal(losses.best_in_group(t([0.1, 0.7, 0.3], [2.0, 2.0, 2.0], [5.0, 1.0, 5.0])),
                       t([0, 1, 0], [0, 0, 0], [1, 0, 0]))  # fmt: skip


def test_dpo_loss_and_implicit_rewards_match_hand_computed_values() -> None:
    # pair 1: beta 0.5 -> chosen reward 0.5*(-1 - -2) = 0.5, rejected 0.5*(-3 - -2) = -0.5, loss -log σ(1)
    loss, chosen, rejected = losses.dpo_loss(
        torch.tensor([-1.0]), torch.tensor([-3.0]), torch.tensor([-2.0]), torch.tensor([-2.0]), beta=0.5
    )
    assert chosen.tolist() == [0.5]
    assert rejected.tolist() == [-0.5]
    assert loss.item() == pytest.approx(math.log(1 + math.exp(-1.0)))


def test_dpo_loss_is_the_mean_over_pairs_and_penalises_a_wrong_preference() -> None:
    # beta 0.1. pair A: chosen 0.1*(-1 - -2) = 0.1, rejected 0.1*(-3 - -2) = -0.1 -> log(1 + e^-0.2)
    # pair B (policy prefers the rejected side): chosen -0.1, rejected 0.2 -> log(1 + e^0.3)
    loss, chosen, rejected = losses.dpo_loss(
        torch.tensor([-1.0, -4.0]),
        torch.tensor([-3.0, -1.0]),
        torch.tensor([-2.0, -3.0]),
        torch.tensor([-2.0, -3.0]),
        beta=0.1,
    )
    assert chosen.tolist() == pytest.approx([0.1, -0.1])
    assert rejected.tolist() == pytest.approx([-0.1, 0.2])
    expected = (math.log(1 + math.exp(-0.2)) + math.log(1 + math.exp(0.3))) / 2
    assert loss.item() == pytest.approx(expected)


def test_dpo_loss_is_log_two_when_policy_equals_reference() -> None:
    logps = torch.tensor([-5.0, -7.0, -2.5])
    loss, chosen, rejected = losses.dpo_loss(logps, logps - 1, logps, logps - 1, beta=0.1)
    assert loss.item() == pytest.approx(math.log(2))
    assert chosen.abs().max() == 0 and rejected.abs().max() == 0


def test_dpo_gradient_raises_chosen_and_lowers_rejected_log_probs() -> None:
    chosen = torch.tensor([-2.0], requires_grad=True)
    rejected = torch.tensor([-2.0], requires_grad=True)
    loss, _, _ = losses.dpo_loss(chosen, rejected, torch.tensor([-2.0]), torch.tensor([-2.0]), beta=0.1)
    loss.backward()
    # d/dx of -log σ(β(x_c - x_r)) at equality = -β/2 for chosen, +β/2 for rejected
    assert chosen.grad.item() == pytest.approx(-0.05)
    assert rejected.grad.item() == pytest.approx(0.05)


def test_completion_logps_sums_only_masked_positions() -> None:
    # vocab 2, logits [0, ln 3] -> p = [1/4, 3/4]
    logits = torch.tensor([[[0.0, math.log(3)], [0.0, math.log(3)], [0.0, 0.0]]])
    targets = torch.tensor([[1, 0, 1]])
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    assert losses.completion_logps(logits, targets, mask).item() == pytest.approx(math.log(0.75) + math.log(0.25))


def test_entropy_is_log_n_when_uniform_zero_when_certain_and_keeps_its_digits_over_a_large_vocabulary() -> None:
    assert losses.entropy(torch.zeros(5)).item() == pytest.approx(math.log(5), abs=1e-6)
    certain = losses.entropy(torch.tensor([0.0, float("-inf"), float("-inf")]))
    assert certain.item() == 0.0  # the impossible tokens add nothing, not NaN
    # a 49k vocabulary with one peaked row: log Z − Σ p·logit would land ~7e-4 (relative) off here
    logits = torch.randn(4, 49_152, generator=torch.Generator().manual_seed(0)) * 4
    logits[:, 7] += 20
    exact = losses.entropy(logits.double())
    assert ((losses.entropy(logits) - exact) / exact).abs().max() < 1e-4
