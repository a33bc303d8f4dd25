"""The active-labeling uncertainty of a prompt, against hand-worked numbers."""

from __future__ import annotations

import math
import warnings

import pytest

from alignloop.errors import AlignloopError
from alignloop.reward.uncertainty import binary_entropy_of_sigmoid, ranking_uncertainty

H_075 = 0.8112781244591328  # -(0.75 log2 0.75 + 0.25 log2 0.25): σ(ln 3) = 0.75
H_SIGMOID_1 = 0.8399415379831693  # p = σ(1) = 0.7310585786300049


def test_equal_rewards_are_a_coin_flip_of_one_bit() -> None:
    assert ranking_uncertainty([0.3, 0.3]) == pytest.approx(1.0)
    assert ranking_uncertainty([2.0, 2.0, 2.0, 2.0]) == pytest.approx(1.0)


def test_two_completions_three_to_one_odds() -> None:
    assert ranking_uncertainty([0.0, math.log(3)]) == pytest.approx(H_075)


def test_three_completions_average_the_three_pairs() -> None:
    # pairs: (0, 1) a tie = 1 bit; (0, 2) and (1, 2) at odds 3:1 = H(0.75) each
    assert ranking_uncertainty([0.0, 0.0, math.log(3)]) == pytest.approx((1.0 + 2 * H_075) / 3)


def test_order_of_the_completions_does_not_matter() -> None:
    rewards = [0.1, -1.3, 2.0, 0.7]
    assert ranking_uncertainty(rewards) == pytest.approx(ranking_uncertainty(rewards[::-1]))


def test_a_sure_model_is_near_zero_without_overflow() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert ranking_uncertainty([0.0, 1000.0]) == pytest.approx(0.0, abs=1e-12)
        assert binary_entropy_of_sigmoid([-1e6, 1e6]).tolist() == pytest.approx([0.0, 0.0], abs=1e-12)


def test_an_ensemble_adds_the_members_disagreement() -> None:
    # members [0, 0] and [0, 2]: r0 - r1 is 0 and -2; mean -1 -> H(σ(1)); population std of {0, -2} = 1
    assert ranking_uncertainty([[0.0, 0.0], [0.0, 2.0]]) == pytest.approx(H_SIGMOID_1 + 1.0)


def test_an_ensemble_of_one_is_the_single_model() -> None:
    assert ranking_uncertainty([[0.2, 1.5, -0.4]]) == pytest.approx(ranking_uncertainty([0.2, 1.5, -0.4]))


def test_members_that_agree_on_differences_add_nothing() -> None:
    # a constant shift per member leaves every r_i - r_j unchanged
    assert ranking_uncertainty([[0.0, math.log(3)], [5.0, 5.0 + math.log(3)]]) == pytest.approx(H_075)


@pytest.mark.parametrize("rewards", [[1.0], [], [[1.0], [2.0]], [0.0, float("nan")], [[[0.0, 1.0]]]])
def test_what_cannot_be_ranked_is_refused(rewards: list) -> None:
    with pytest.raises(AlignloopError):
        ranking_uncertainty(rewards)
