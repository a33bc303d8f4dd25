"""DPO math on hand-worked numbers, and the batch layout that feeds it."""

from __future__ import annotations

import math

import pytest
import torch

from alignloop.losses import completion_logps, dpo_loss


def test_dpo_loss_and_implicit_rewards_match_hand_computed_values() -> None:
    # pair 1: beta 0.5 -> chosen reward 0.5*(-1 - -2) = 0.5, rejected 0.5*(-3 - -2) = -0.5, loss -log σ(1)
    loss, chosen, rejected = dpo_loss(
        torch.tensor([-1.0]), torch.tensor([-3.0]), torch.tensor([-2.0]), torch.tensor([-2.0]), beta=0.5
    )
    assert chosen.tolist() == [0.5]
    assert rejected.tolist() == [-0.5]
    assert loss.item() == pytest.approx(math.log(1 + math.exp(-1.0)))


def test_dpo_loss_is_the_mean_over_pairs_and_penalises_a_wrong_preference() -> None:
    # beta 0.1. pair A: chosen 0.1*(-1 - -2) = 0.1, rejected 0.1*(-3 - -2) = -0.1 -> log(1 + e^-0.2)
    # pair B (policy prefers the rejected side): chosen -0.1, rejected 0.2 -> log(1 + e^0.3)
    loss, chosen, rejected = dpo_loss(
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
    loss, chosen, rejected = dpo_loss(logps, logps - 1, logps, logps - 1, beta=0.1)
    assert loss.item() == pytest.approx(math.log(2))
    assert chosen.abs().max() == 0 and rejected.abs().max() == 0


def test_dpo_gradient_raises_chosen_and_lowers_rejected_log_probs() -> None:
    chosen = torch.tensor([-2.0], requires_grad=True)
    rejected = torch.tensor([-2.0], requires_grad=True)
    loss, _, _ = dpo_loss(chosen, rejected, torch.tensor([-2.0]), torch.tensor([-2.0]), beta=0.1)
    loss.backward()
    # d/dx of -log σ(β(x_c - x_r)) at equality = -β/2 for chosen, +β/2 for rejected
    assert chosen.grad.item() == pytest.approx(-0.05)
    assert rejected.grad.item() == pytest.approx(0.05)


def test_completion_logps_sums_only_masked_positions() -> None:
    # vocab 2, logits [0, ln 3] -> p = [1/4, 3/4]
    logits = torch.tensor([[[0.0, math.log(3)], [0.0, math.log(3)], [0.0, 0.0]]])
    targets = torch.tensor([[1, 0, 1]])
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    assert completion_logps(logits, targets, mask).item() == pytest.approx(math.log(0.75) + math.log(0.25))
