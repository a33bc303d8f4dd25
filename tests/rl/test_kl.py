"""β's controllers (``rl/kl.py``): fixed, and adaptive toward a target KL, on hand-worked steps."""

from __future__ import annotations

import math

import pytest

from alignloop.rl.kl import AdaptiveKLController, FixedKLController


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
