"""KL controllers: the β that weighs KL(policy‖reference) against the reward in PPO and GRPO.

The ``Algorithm`` base builds one from any algorithm section that inherits ``config.kl_control``.

The adaptive controller moves β multiplicatively toward a target KL, in steps rather than
completions: β ← β · exp(clip(KL / target − 1, −1, 1) / horizon). With ``horizon`` = 5 a KL
twice the target raises β by 22 % per step and half the target lowers it by 10 %, so β acts
within a demo's few dozen steps. (Ziegler et al.'s controller uses a horizon of 10 000
completions with 512 per batch — about 20 steps; counted in completions, the same horizon
at 8 per batch would take a thousand steps to move β at all.) β has a floor: while the KL
is far below target β keeps shrinking (by 18 % a step at KL ≈ 0), and from 0.005 (where a
24-step demo run took it without a floor) it needs a dozen steps at +22 % to hold a KL that
has meanwhile overshot to twice the target. The floor is 0.02, for rewards in units of the
reward model's spread. Measured on the demo (docs/benchmarks.md): at 0.05, β's start, a
sentiment run that gains barely moved; against 0.01 over twelve (taste, seed) runs, 0.02
cleared both of the demo's bars in 9 where 0.01 did in 6, the judge's mean gain the same
(+0.013 [−0.060, +0.086]). A fixed controller keeps β constant.
"""

from __future__ import annotations

import math
from typing import Any


class FixedKLController:
    """β stays at its initial value."""

    def __init__(self, kl_coef: float) -> None:
        self.value = kl_coef

    def update(self, current_kl: float) -> None:
        """Nothing to adapt."""

    def state_dict(self) -> dict[str, Any]:
        return {"value": self.value}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.value = float(state["value"])


class AdaptiveKLController(FixedKLController):
    """β grows when the KL is above ``target`` and shrinks (not below ``floor``) when it is below it,
    ``horizon`` steps to react."""

    def __init__(self, kl_coef: float, target: float, horizon: float, floor: float = 0.0) -> None:
        super().__init__(kl_coef)
        self.target = target
        self.horizon = horizon
        self.floor = floor

    def update(self, current_kl: float) -> None:
        """``current_kl``: this step's mean KL per completion (nats, summed over its tokens)."""
        error = min(max(current_kl / self.target - 1.0, -1.0), 1.0)
        self.value = max(self.value * math.exp(error / self.horizon), self.floor)


def kl_controller(kl_coef: float, target_kl: float | None, horizon: float, floor: float = 0.0) -> FixedKLController:
    """Adaptive (β ≥ ``floor``) when a target is given, fixed otherwise."""
    if target_kl is None:
        return FixedKLController(kl_coef)
    return AdaptiveKLController(kl_coef, target_kl, horizon, floor)
