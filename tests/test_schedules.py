"""The learning-rate schedule shared by the training loops, against hand-worked numbers."""

from __future__ import annotations

import pytest

from alignloop.schedules import lr_multiplier, warmup_schedule


def test_warm_up_rises_linearly_then_holds() -> None:
    assert [lr_multiplier(s, 3) for s in range(5)] == [0.25, 0.5, 0.75, 1.0, 1.0]


def test_no_warm_up_starts_at_the_full_rate() -> None:
    assert lr_multiplier(0, 0) == 1.0


def test_with_a_total_the_rate_decays_linearly_to_zero_after_warm_up() -> None:
    # warm-up 2 of 6 steps: 1/3, 2/3, then (6 - s) / 4
    assert [lr_multiplier(s, 2, 6) for s in range(7)] == pytest.approx([1 / 3, 2 / 3, 1.0, 0.75, 0.5, 0.25, 0.0])


def test_the_scheduler_applies_the_multiplier_to_the_optimiser() -> None:
    import torch

    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = warmup_schedule(optimizer, 1)
    rates = []
    for _ in range(3):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert rates == [0.5, 1.0, 1.0]
