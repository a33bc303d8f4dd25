"""KL controllers: the β that weighs KL(policy‖reference) against the reward in PPO.

The adaptive controller (Ziegler et al., 2019) moves β proportionally toward a target KL:
error = clip(KL / target − 1, −0.2, 0.2), β ← β · (1 + error · n / horizon), where n is the
number of completions behind this measurement. A fixed controller keeps β constant.
"""

from __future__ import annotations

from typing import Any


class FixedKLController:
    """β stays at its initial value."""

    def __init__(self, kl_coef: float) -> None:
        self.value = kl_coef

    def update(self, current_kl: float, n_samples: int) -> None:
        """Nothing to adapt."""

    def state_dict(self) -> dict[str, Any]:
        return {"value": self.value}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.value = float(state["value"])


class AdaptiveKLController(FixedKLController):
    """β grows when the KL is above ``target`` and shrinks when it is below."""

    def __init__(self, kl_coef: float, target: float, horizon: int) -> None:
        super().__init__(kl_coef)
        self.target = target
        self.horizon = horizon

    def update(self, current_kl: float, n_samples: int) -> None:
        """``current_kl``: mean KL per completion (nats, summed over its tokens)."""
        error = min(max(current_kl / self.target - 1.0, -0.2), 0.2)
        self.value *= 1.0 + error * n_samples / self.horizon


def kl_controller(kl_coef: float, target_kl: float | None, horizon: int) -> FixedKLController:
    """Adaptive when a target is given, fixed otherwise."""
    if target_kl is None:
        return FixedKLController(kl_coef)
    return AdaptiveKLController(kl_coef, target_kl, horizon)
