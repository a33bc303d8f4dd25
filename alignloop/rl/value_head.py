"""Critics for PPO: V(s_t), the expected return from each completion position.

* ``ValueHead`` (default): one linear layer on the policy's last hidden states; the
  policy's forward pass serves both, so the critic costs almost nothing.
* ``RewardModelCritic``: a separate backbone initialised from a reward-model run
  (its score head becomes the value head). It reads the policy's token ids, so it is
  possible only when the reward model shares the policy's tokenizer.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from alignloop.errors import AlignloopError
from alignloop.models import LOAD_OPTIONS

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from alignloop.config import LoraSettings


class ValueHead(nn.Module):
    """hidden (batch, T, hidden_size) → values (batch, T)."""

    def __init__(self, hidden_size: int) -> None:
        super().__init__()
        self.summary = nn.Linear(hidden_size, 1)
        nn.init.zeros_(self.summary.weight)  # V = 0 everywhere at first: no noise in the first advantages
        nn.init.zeros_(self.summary.bias)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.summary(hidden).squeeze(-1)


class RewardModelCritic(nn.Module):
    """A reward model's backbone and score head, trained as the critic."""

    def __init__(self, backbone: nn.Module, head: ValueHead) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, position_ids: torch.Tensor, n_completion: int
    ) -> torch.Tensor:
        """Values at the positions that predict each of the last ``n_completion`` tokens: (batch, T)."""
        hidden = self.backbone(
            input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=False
        ).last_hidden_state
        return self.head(hidden[:, -(n_completion + 1) : -1])


def critic_from_reward_model(
    run_dir: str | Path, policy_tokenizer: PreTrainedTokenizerBase, lora: LoraSettings
) -> RewardModelCritic:
    """Build a critic from the reward-model run ``run_dir`` (its ``model/``), refusing other tokenizers; with the
    policy's LoRA settings where ``lora.lora_r`` is above 0."""
    from transformers import AutoModel, AutoTokenizer

    model_dir = Path(run_dir) / "model"
    if not model_dir.is_dir():
        raise AlignloopError(
            f"critic=reward_model needs a reward-model run directory as the reward; {run_dir} has no model/"
        )
    rm_tokenizer = AutoTokenizer.from_pretrained(model_dir)
    if rm_tokenizer.get_vocab() != policy_tokenizer.get_vocab():
        raise AlignloopError(
            f"the reward model in {run_dir} uses a different tokenizer than the policy, so it cannot be the critic; "
            "use ppo.critic=policy (a value head on the policy)"
        )
    backbone = AutoModel.from_pretrained(model_dir, **LOAD_OPTIONS)
    head = ValueHead(backbone.config.hidden_size)
    score = _score_layer(model_dir)
    if score is not None:
        with torch.no_grad():
            head.summary.weight.copy_(score["weight"].reshape(1, -1))
            if "bias" in score:
                head.summary.bias.copy_(score["bias"].reshape(1))
    if lora.lora_r > 0:
        from alignloop.models import add_lora

        backbone = add_lora(backbone, lora, task_type=None, name=f"the reward model in {run_dir}")
    return RewardModelCritic(backbone, head)


def _score_layer(model_dir: Path) -> dict[str, torch.Tensor] | None:
    """The sequence-classification head's tensors (``score.*`` or ``classifier.*``), if saved."""
    from safetensors import safe_open

    found: dict[str, torch.Tensor] = {}
    for file in model_dir.glob("*.safetensors"):
        with safe_open(str(file), framework="pt") as f:
            for key in f.keys():  # safe_open has no __iter__
                leaf = key.rsplit(".", 1)[-1]
                if key.startswith(("score.", "classifier.")) and leaf in ("weight", "bias"):
                    found[leaf] = f.get_tensor(key)
    return found or None
