"""The reward model's pairwise loss, by hand."""

from __future__ import annotations

import math

import pytest
import torch

from alignloop.losses import pairwise_loss


def test_hard_labels_are_bradley_terry_and_the_margin_shifts_the_difference() -> None:
    chosen, rejected = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 0.0])
    expected = (math.log1p(math.exp(-1.0)) + math.log(2.0)) / 2
    assert pairwise_loss(chosen, rejected).item() == pytest.approx(expected)
    shifted = pairwise_loss(chosen, rejected, margin=torch.tensor([1.0, 0.0])).item()
    assert shifted == pytest.approx(math.log(2.0))


def test_soft_labels_are_the_cross_entropy_against_the_labelers_share() -> None:
    delta = torch.tensor([math.log(2.0)])  # σ(Δ) = 2/3
    two_of_three = pairwise_loss(delta, torch.zeros(1), target=torch.tensor([2 / 3]))
    p = 2 / 3
    assert two_of_three.item() == pytest.approx(-(p * math.log(p) + (1 - p) * math.log(1 - p)))
    # the soft loss is smallest where σ(Δ) equals the share: a 2-of-3 pair is not pushed to certainty
    deltas = torch.linspace(-3, 3, 601, requires_grad=True)
    losses = torch.stack([pairwise_loss(d[None], torch.zeros(1), target=torch.tensor([p])) for d in deltas])
    assert deltas[losses.argmin()].item() == pytest.approx(math.log(2.0), abs=0.01)
    unanimous = pairwise_loss(delta, torch.zeros(1), target=torch.ones(1))
    assert unanimous.item() == pytest.approx(pairwise_loss(delta, torch.zeros(1)).item())
