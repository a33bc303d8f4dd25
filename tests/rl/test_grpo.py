"""GRPO's KL report and β, and RAFT (GRPO's loop) learning only each prompt's best answer, on hand-made rollouts."""

from __future__ import annotations

import math

import pytest
import torch

from alignloop.rl.config import RLConfig
from alignloop.rl.grpo import GRPO
from alignloop.rl.raft import RAFT
from alignloop.rl.rollout import Rollout


def t(*rows: list[float]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float32)


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
