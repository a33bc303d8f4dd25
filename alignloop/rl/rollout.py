"""Rollouts: sample completions through the generation backend, then score every token in one forward.

A rollout row is one completion. Its tokens sit in one padded tensor, the prompt
left-padded and the completion right-padded, so every row's first completion token
is at the same column P::

    input_ids   [pad pad p0 p1 p2 | c0 c1 c2 eos pad]     (batch, P + T)

The policy's log-probabilities (and values) for the T completion tokens come from
one forward pass over that tensor with the language-model head applied to the last
T + 1 positions only; the reference's come from the same pass with the LoRA adapter
disabled (or from a frozen copy under full fine-tuning).

Rows that share a prompt (the k completions of a group) run that prompt once: its KV
cache is copied to each row and the completions attend to it, so a group of 8 pays for
one prompt instead of 8, in the backward pass too (gradients flow back through the
copied cache).

The policy's own scores need that pass only when nothing else computes them
(``policy_scores``):

* ``"training"``: the algorithm makes exactly one optimiser step per rollout, so the
  log-probs of the sampling policy are those of the training forward itself (the
  weights have not moved yet); the trainer fills them in (``Rollout.set_policy_scores``).
* ``"sampler"``: the sampler ran the trained weights in the training precision, so the
  log-probs it drew with are the policy's, apart from float32 rounding; it also reports
  each distribution's entropy and, for a value head, the hidden state the head reads.
* ``"pass"``: a scoring forward, as above — for a sampling copy in another precision
  (whose log-probs differ from the trainer's) and for a separate critic.

The reference, when the algorithm has one, is always scored here.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import nn

from alignloop import losses
from alignloop.backends import RolloutBackend, SamplingParams, shared_prompts
from alignloop.cpu_linears import scoring_linears
from alignloop.frozen_casts import FrozenCasts
from alignloop.models import decoder_and_head
from alignloop.precision import differentiated_attention
from alignloop.rl.value_head import RewardModelCritic, ValueHead

_FORWARD_ROWS = 16  # rows per no-grad scoring forward during a rollout
PolicyScores = Literal["pass", "sampler", "training"]  # where a rollout's policy log-probs come from


@dataclass
class Rollout:
    """One batch of sampled completions and what the policy and reference said about their tokens."""

    input_ids: torch.Tensor  # (B, P + T) long: left-padded prompt, right-padded completion
    attention_mask: torch.Tensor  # (B, P + T) long: 1 on real tokens
    position_ids: torch.Tensor  # (B, P + T) long: positions counted from each row's first real token
    completion_ids: torch.Tensor  # (B, T) long: the sampled tokens, pad after the end
    mask: torch.Tensor  # (B, T) float: 1.0 on sampled tokens (end token included), 0.0 on padding
    logprobs: torch.Tensor | None  # (B, T) float: log π_old(token) of the sampling policy, temperature applied
    ref_logprobs: torch.Tensor | None  # (B, T) float: log π_ref(token); None when the algorithm needs no reference
    values: torch.Tensor | None  # (B, T) float: V(s_t) from the critic at sampling time; None without a critic
    entropy: torch.Tensor | None  # (B,) float: mean per-token entropy of the policy over each completion (nats)
    ended: torch.Tensor  # (B,) bool: the completion stopped at an end token (else it hit max_new_tokens)
    group: torch.Tensor  # (B,) long: index of the prompt within this batch; a prompt's k rows are contiguous
    prompts: list[str]  # (B) the prompt text of each row (last user turn)
    completions: list[str]  # (B) the decoded completion, special tokens removed
    extras: dict[str, torch.Tensor] = field(default_factory=dict)  # per-algorithm tensors (advantages, returns, ...)
    # (B, T) float: log-probs the sampler gave its tokens, in its own precision and forward (temperature applied,
    # before top-p); None only in a rollout built by hand (tests)
    sampler_logprobs: torch.Tensor | None = None
    # the policy's log-probs, entropy and values are the sampler's own (policy_scores="sampler"), so
    # ``logprob_gap`` has nothing to compare here: the trainer measures it on its first forward instead
    policy_from_sampler: bool = False

    @property
    def n_rows(self) -> int:
        return self.input_ids.shape[0]

    def set_policy_scores(self, out: dict[str, torch.Tensor]) -> None:
        """Take the sampling policy's log-probs, entropy and values from a forward over every row (detached)."""
        self.logprobs = out["logprobs"].detach() * self.mask
        self.entropy = masked_row_mean(out["entropy"].detach(), self.mask)
        if "values" in out:
            self.values = out["values"].detach() * self.mask

    def set_importance_weights(self, cap: float) -> None:
        """``extras["importance_weights"]`` (B, T): min(π_train / π_sampler, cap) per token (see the losses)."""
        assert self.logprobs is not None and self.sampler_logprobs is not None
        self.extras["importance_weights"] = (
            losses.truncated_importance_weights(self.logprobs, self.sampler_logprobs, cap) * self.mask
        )

    def logprob_gap(self) -> float | None:
        """Mean |log π_train(token) − log π_sampler(token)| over the sampled tokens (nats), once both are known.

        Zero up to float rounding when sampling and training run the same weights in the same
        precision; bf16 sampling against float32 training shows here.
        """
        if self.logprobs is None or self.sampler_logprobs is None or self.policy_from_sampler:
            return None
        return token_gap(self.logprobs, self.sampler_logprobs, self.mask)

    @property
    def lengths(self) -> torch.Tensor:
        """(B,) float: completion tokens per row."""
        return self.mask.sum(-1)

    def select(self, rows: torch.Tensor) -> dict[str, torch.Tensor]:
        """The tensors of some rows, with columns of completion padding that no selected row uses cut off."""
        t = int(self.mask[rows].sum(-1).max().item()) if rows.numel() else 0
        t = max(t, 1)
        cut = self.completion_ids.shape[1] - t  # trailing completion columns to drop
        width = self.input_ids.shape[1] - cut
        out = {
            "input_ids": self.input_ids[rows, :width],
            "attention_mask": self.attention_mask[rows, :width],
            "position_ids": self.position_ids[rows, :width],
            "completion_ids": self.completion_ids[rows, :t],
            "mask": self.mask[rows, :t],
        }
        if self.logprobs is not None:
            out["logprobs"] = self.logprobs[rows, :t]
        if self.ref_logprobs is not None:
            out["ref_logprobs"] = self.ref_logprobs[rows, :t]
        if self.values is not None:
            out["values"] = self.values[rows, :t]
        if self.sampler_logprobs is not None:
            out["sampler_logprobs"] = self.sampler_logprobs[rows, :t]
        for name, tensor in self.extras.items():
            out[name] = tensor[rows, :t] if tensor.dim() == 2 else tensor[rows]
        return out


class ActorCritic(nn.Module):
    """The trained modules in one: the policy, and the value head or critic when the algorithm has one.

    ``forward`` returns what a loss needs for the completion tokens, so a distributed
    wrapper (DDP) sees one module and all-reduces every gradient.
    """

    def __init__(
        self,
        policy: nn.Module,
        temperature: float,
        value_head: ValueHead | None = None,
        critic: RewardModelCritic | None = None,
    ) -> None:
        super().__init__()
        self.policy = policy
        self.value_head = value_head
        self.critic = critic
        self.temperature = temperature
        self.casts: FrozenCasts | None = None  # set by compute_in: forwards under autocast over float32 weights

    def compute_in(self, dtype: torch.dtype) -> None:
        """Run every forward under ``dtype`` autocast, the frozen weights (all of them under LoRA) cast once."""
        self.casts = FrozenCasts(self, dtype)

    def forward(self, *args: Any, **kwargs: Any) -> dict[str, torch.Tensor]:
        if self.casts is None:
            return self._forward(*args, **kwargs)
        device = next(self.parameters()).device
        # a pass that will be differentiated may need another attention kernel (alignloop.precision)
        attention = (
            differentiated_attention(device, self.casts.dtype) if torch.is_grad_enabled() else contextlib.nullcontext()
        )
        with torch.autocast(device.type, dtype=self.casts.dtype), attention, self.casts.applied():
            return self._forward(*args, **kwargs)

    @property
    def has_values(self) -> bool:
        return self.value_head is not None or self.critic is not None

    def _forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        position_ids: torch.Tensor,
        completion_ids: torch.Tensor,
        with_values: bool = True,
        with_entropy: bool = False,
    ) -> dict[str, torch.Tensor]:
        """``logprobs`` (B, T), and ``values`` (B, T) / ``entropy`` (B, T, never differentiable) on request."""
        decoder, head = decoder_and_head(self.policy)
        n = completion_ids.shape[1]
        hidden = completion_hidden(decoder, input_ids, attention_mask, position_ids, n)  # (B, T, hidden)
        logits = head(hidden).float()  # (B, T, vocab)
        if self.temperature != 1.0:  # a pass over B·T·vocab floats, forward and backward: skip it when it does nothing
            logits = logits / self.temperature
        out = {"logprobs": losses.token_logprobs(logits, completion_ids)}  # (B, T)
        if with_entropy:
            with torch.no_grad():
                out["entropy"] = losses.entropy(logits)
        if with_values and self.value_head is not None:
            out["values"] = self.value_head(hidden).float()
        elif with_values and self.critic is not None:
            out["values"] = self.critic(input_ids, attention_mask, position_ids, n).float()
        return out


def completion_hidden(
    decoder: nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    position_ids: torch.Tensor,
    n: int,
) -> torch.Tensor:
    """(B, n, hidden): the decoder's hidden state at the position before each of the last ``n`` tokens.

    Rows sharing a prompt run it once and continue from a copy of its KV cache (see the
    module docs); under gradient checkpointing, which keeps no cache, every row runs whole.
    """
    width = input_ids.shape[1] - n
    checkpointing = getattr(decoder, "gradient_checkpointing", False) and decoder.training
    groups = shared_prompts(input_ids, attention_mask, width) if width > 0 and not checkpointing else None
    if groups is None:
        hidden = decoder(
            input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=False
        ).last_hidden_state
        return hidden[:, -(n + 1) : -1]
    first, inverse = groups
    rest = slice(width, width + n - 1)  # the last token predicts nothing we score
    return hidden_after_shared_prompts(
        decoder,
        {"input_ids": input_ids[first, :width], "attention_mask": attention_mask[first, :width],
         "position_ids": position_ids[first, :width]},
        inverse,
        {"input_ids": input_ids[:, rest], "attention_mask": attention_mask[:, : width + n - 1],
         "position_ids": position_ids[:, rest]},
    )  # fmt: skip


def hidden_after_shared_prompts(
    decoder: nn.Module,
    prompts: dict[str, torch.Tensor],
    prompt_of_row: torch.Tensor,
    continuations: dict[str, torch.Tensor],
) -> torch.Tensor:
    """(rows, 1 + C, hidden): each row's prompt-final hidden state, then its continuation's.

    ``prompts`` (``input_ids``, ``attention_mask``, ``position_ids``) hold each distinct prompt
    once, left-padded; ``prompt_of_row`` picks a row's prompt; ``continuations`` hold the C
    tokens every row runs after its prompt, with ``attention_mask`` over prompt and
    continuation together. The prompts run once and their KV cache is copied to the rows
    (index_select: differentiable, so gradients flow back into the prompt pass). With C = 0
    only the prompt pass runs.
    """
    prompt = decoder(**prompts, use_cache=True)
    last_prompt = prompt.last_hidden_state[prompt_of_row, -1:]  # predicts each row's first continuation token
    if continuations["input_ids"].shape[1] == 0:
        return last_prompt
    cache = prompt.cache
    cache.reorder_cache(prompt_of_row)
    rest = decoder(**continuations, cache=cache, use_cache=True).last_hidden_state
    return torch.cat([last_prompt, rest], dim=1)


def token_gap(logprobs: torch.Tensor, sampler_logprobs: torch.Tensor, mask: torch.Tensor) -> float:
    """Mean |log π_train − log π_sampler| over the unmasked tokens (nats)."""
    gap = (logprobs.detach() - sampler_logprobs).abs() * mask
    return float(gap.sum() / mask.sum().clamp(min=1.0))


def masked_row_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B,) mean of ``values`` (B, T) over each row's unmasked positions."""
    return (values * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)


def reference_context(
    policy: nn.Module, reference: nn.Module | None
) -> Callable[[], contextlib.AbstractContextManager]:
    """How to run the reference: a frozen copy's own forward, or the policy with its adapter disabled."""
    if reference is not None:
        return contextlib.nullcontext
    return policy.disable_adapter  # type: ignore[return-value]  # peft's context manager


def pad_rollout_tensors(
    prompt_ids: list[list[int]], completion_ids: list[list[int]], pad_id: int
) -> dict[str, torch.Tensor]:
    """Lay out prompts (left-padded) and completions (right-padded) in one tensor; see the module docs."""
    rows = len(prompt_ids)
    p = max(len(ids) for ids in prompt_ids)
    t = max(1, max(len(ids) for ids in completion_ids))
    input_ids = torch.full((rows, p + t), pad_id, dtype=torch.long)
    attention = torch.zeros((rows, p + t), dtype=torch.long)
    for row, (prompt, completion) in enumerate(zip(prompt_ids, completion_ids)):
        input_ids[row, p - len(prompt) : p] = torch.tensor(prompt, dtype=torch.long)
        attention[row, p - len(prompt) : p] = 1
        if completion:
            input_ids[row, p : p + len(completion)] = torch.tensor(completion, dtype=torch.long)
            attention[row, p : p + len(completion)] = 1
    positions = (attention.cumsum(-1) - 1).clamp(min=0)
    return {
        "input_ids": input_ids,
        "attention_mask": attention,
        "position_ids": positions,
        "completion_ids": input_ids[:, p:],
        "mask": attention[:, p:].float(),
    }


def _chunks(n: int, size: int) -> Iterator[slice]:
    for start in range(0, n, size):
        yield slice(start, min(n, start + size))


def score_tokens(
    actor_critic: ActorCritic,
    tensors: dict[str, torch.Tensor],
    reference: nn.Module | None,
    need_reference: bool,
    need_policy: bool = True,
) -> dict[str, torch.Tensor]:
    """Policy log-probs, entropy and values (``need_policy``) and reference log-probs (``need_reference``).

    Runs in inference mode and eval mode (no dropout), in chunks of rows.
    """
    if not (need_policy or need_reference):
        return {}
    was_training = actor_critic.training
    actor_critic.eval()
    parts: dict[str, list[torch.Tensor]] = {}
    ref_ctx = reference_context(actor_critic.policy, reference)
    # a model computing under autocast runs its linears on its own casts (FrozenCasts); the others on this CPU's kernel
    plain = [m for m in (actor_critic, reference) if m is not None and getattr(m, "casts", None) is None]
    try:
        with torch.inference_mode(), contextlib.ExitStack() as linears:
            for model in plain:
                linears.enter_context(scoring_linears(model, rows=tensors["input_ids"].numel()))
            for rows in _chunks(tensors["input_ids"].shape[0], _FORWARD_ROWS):
                args = {k: tensors[k][rows] for k in ("input_ids", "attention_mask", "position_ids", "completion_ids")}
                out = actor_critic(**args, with_values=True, with_entropy=True) if need_policy else {}
                if need_reference:
                    with ref_ctx():
                        ref_model = reference if reference is not None else actor_critic
                        out["ref_logprobs"] = ref_model(**args, with_values=False)["logprobs"]
                for key, value in out.items():
                    parts.setdefault(key, []).append(value)
    finally:
        actor_critic.train(was_training)
    return {key: torch.cat(values) for key, values in parts.items()}


def collect_rollout(
    actor_critic: ActorCritic,
    backend: RolloutBackend,
    prompt_ids: list[list[int]],
    prompt_texts: list[str],
    group_size: int,
    params: SamplingParams,
    seeds: list[int],
    reference: nn.Module | None,
    need_reference: bool,
    policy_scores: PolicyScores = "pass",
) -> Rollout:
    """Sample ``group_size`` completions per prompt (rows of a prompt contiguous) and score their tokens.

    Where the policy's log-probs, entropy and values come from (``policy_scores``, see the module docs):
    ``"pass"`` a scoring forward; ``"sampler"`` the sampler's own forward, the values from the value head
    on its hidden states; ``"training"`` left for ``Rollout.set_policy_scores``.
    """
    from_sampler = policy_scores == "sampler"
    if from_sampler and actor_critic.critic is not None:
        raise ValueError("a separate critic's values need a scoring pass; the sampler only has the policy's states")
    rows_prompt_ids = [ids for ids in prompt_ids for _ in range(group_size)]
    sampled = backend.sample(
        rows_prompt_ids, params, seeds,
        with_entropy=from_sampler, with_hidden=from_sampler and actor_critic.value_head is not None,
    )  # fmt: skip
    completions = sampled.ids
    tokenizer = backend.tokenizer
    ended = torch.tensor([bool(c) and c[-1] in backend.end_ids for c in completions])
    tensors = pad_rollout_tensors(rows_prompt_ids, completions, backend.pad_id)
    device = next(actor_critic.parameters()).device
    tensors = {k: v.to(device) for k, v in tensors.items()}
    mask = tensors["mask"]
    assert sampled.logprobs is not None
    sampler_logprobs = sampled.logprobs.to(device)
    scored = score_tokens(actor_critic, tensors, reference, need_reference, need_policy=policy_scores == "pass")
    if from_sampler:
        scored["logprobs"] = sampler_logprobs
        assert sampled.entropy is not None
        scored["entropy"] = sampled.entropy.to(device)
        if sampled.hidden is not None and actor_critic.value_head is not None:
            with torch.inference_mode():
                scored["values"] = actor_critic.value_head(sampled.hidden.to(device)).float()
    return Rollout(
        input_ids=tensors["input_ids"],
        attention_mask=tensors["attention_mask"],
        position_ids=tensors["position_ids"],
        completion_ids=tensors["completion_ids"],
        mask=mask,
        logprobs=scored["logprobs"] * mask if "logprobs" in scored else None,
        ref_logprobs=scored["ref_logprobs"] * mask if "ref_logprobs" in scored else None,
        values=scored["values"] * mask if "values" in scored else None,
        entropy=masked_row_mean(scored["entropy"], mask) if "entropy" in scored else None,
        ended=ended.to(device),
        group=torch.arange(len(prompt_ids), device=device).repeat_interleave(group_size),
        prompts=[text for text in prompt_texts for _ in range(group_size)],
        completions=[tokenizer.decode(c, skip_special_tokens=True).strip() for c in completions],
        sampler_logprobs=sampler_logprobs,
        policy_from_sampler=from_sampler,
    )
