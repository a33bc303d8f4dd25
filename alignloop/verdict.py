"""What the loop did, in one sentence, and the warnings that say when not to believe it.

The sentence compares the last trained model of an evaluation with the first (the
starting policy) by the judge when the evaluation had one, else by the reward model:
*better* when the 95% interval of the paired per-prompt difference lies above 0,
*worse* when it lies below, otherwise *no detectable change*. It quotes that interval
and the win rate with its interval.

Warnings flag the cases where the sentence misleads:

* the reward model is near chance — held-out pairwise accuracy below 0.6, or more than
  15 points below the labelers' own agreement on the same pairs (its ceiling): RL then
  optimised noise;
* the reward-model score rose detectably while the judge's fell — over-optimisation,
  the policy exploiting the reward model's mistakes;
* best-of-N against the same reward model is better by the judge where the trained policy
  is not — the reward model knew an order of the policy's answers that RL did not learn.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

ACCURACY_FLOOR = 0.6  # held-out pairwise accuracy below this: the reward model is near chance
CEILING_GAP = 0.15  # accuracy this far below the labelers' agreement (the ceiling): the reward model learnt little


@dataclass
class Verdict:
    outcome: str  # "better", "worse" or "no detectable change"
    sentence: str
    warnings: list[str] = field(default_factory=list)


def accuracy_and_ceiling(metrics: dict[str, Any]) -> tuple[float | None, float | None]:
    """A reward run's held-out accuracy and its ceiling, as ``reward_model_warnings`` takes them: the labelers'
    agreement with each other (``rm/inter_labeler``), or ``rm/ceiling`` where the labelers per pair are unknown."""
    return metrics.get("rm/eval_accuracy"), metrics.get("rm/inter_labeler", metrics.get("rm/ceiling"))


def reward_model_warnings(accuracy: float | None, ceiling: float | None) -> list[str]:
    """Warnings from the reward model's held-out accuracy (``rm/eval_accuracy``) and ceiling
    (``rm/inter_labeler``, or ``rm/ceiling`` where the labelers per pair are unknown)."""
    warnings = []
    if accuracy is not None and accuracy < ACCURACY_FLOOR:
        warnings.append(
            f"The reward model is near chance: held-out pairwise accuracy {accuracy:.2f} (below "
            f"{ACCURACY_FLOOR:.1f}). What RL optimised says little about what the labelers prefer."
        )
    if accuracy is not None and ceiling is not None and ceiling - accuracy > CEILING_GAP:
        warnings.append(
            f"The reward model is far below its ceiling: accuracy {accuracy:.2f} against the labelers' own "
            f"agreement {ceiling:.2f} on the same pairs, {100 * (ceiling - accuracy):.0f} points short "
            f"(more than {100 * CEILING_GAP:.0f})."
        )
    return warnings


def verdict(
    evaluation: dict[str, Any], *, rm_accuracy: float | None = None, rm_ceiling: float | None = None
) -> Verdict | None:
    """The verdict on an ``evaluation.json`` (``EvalReport.to_json()``); None when it compares no two models."""
    rows = evaluation.get("models", [])
    trained = [m for m in rows[1:] if not m.get("best_of")]
    if not rows or not trained or trained[-1].get("reward_diff_ci") is None:
        return None
    base, model = rows[0], trained[-1]
    by_judge = model.get("judge_diff_ci") is not None
    prefix = "judge_" if by_judge else "reward_"
    diff, (low, high) = model[f"{prefix}diff"], model[f"{prefix}diff_ci"]
    win_key = "judge_win" if by_judge else "win"
    win, (win_low, win_high) = model[f"{win_key}_rate"], model[f"{win_key}_ci"]
    outcome = "better" if low > 0 else "worse" if high < 0 else "no detectable change"
    scorer = f"the judge ({evaluation.get('judge')})" if by_judge else "the reward model"
    sentence = (
        f"{outcome[0].upper()}{outcome[1:]} by {scorer}: {model['model']} against {base['model']} on "
        f"{evaluation.get('prompts')} held-out prompts, a paired difference of {diff:+.3f} per prompt "
        f"(95% CI {low:+.3f} to {high:+.3f}) and a win rate of {100 * win:.0f}% "
        f"(95% CI {100 * win_low:.0f}–{100 * win_high:.0f}%)."
    )
    warnings = reward_model_warnings(rm_accuracy, rm_ceiling)
    judge_diff = model.get("judge_diff")
    if judge_diff is not None and model["reward_diff_ci"][0] > 0 and judge_diff < 0:
        warnings.append(
            f"The reward-model score rose ({model['reward_diff']:+.3f} per prompt, 95% CI "
            f"{model['reward_diff_ci'][0]:+.3f} to {model['reward_diff_ci'][1]:+.3f}) while the judge's fell "
            f"({judge_diff:+.3f}): the policy may be exploiting the reward model's mistakes (over-optimisation)."
        )
    best = next((m for m in rows[1:] if m.get("best_of") and m.get("judge_diff_ci") is not None), None)
    if by_judge and outcome != "better" and best is not None and best["judge_diff_ci"][0] > 0:
        warnings.append(
            f"Best-of-{best['best_of']} against the same reward model is better by the judge "
            f"({best['judge_diff']:+.3f} per prompt, 95% CI {best['judge_diff_ci'][0]:+.3f} to "
            f"{best['judge_diff_ci'][1]:+.3f}, at {best['kl']:.2f} nats) where the trained policy is not: the reward "
            "model orders the policy's answers, and RL did not learn that order. Labels of the trained policy's own "
            "answers (`alignloop round next`) show the reward model where RL strays."
        )
    return Verdict(outcome, sentence, warnings)
