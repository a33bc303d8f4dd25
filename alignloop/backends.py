"""Generation backends: how token ids are sampled from a causal LM.

The generate stage samples through a ``GenerationBackend``, so vLLM can replace
transformers on a GPU without touching it (``vllm_backend``). RL rollouts need a ``RolloutBackend``,
which also reports what the sampler's forward said about each token; only ``HFBackend`` is one.

``HFBackend`` runs its own batched sampling loop over a transformers model instead of
``model.generate``: rows are left-padded, the KV cache is kept, the language-model
head is applied to the last position only, a prompt repeated in the batch (the K
completions of one prompt, an RL group) is prefilled once and its cache copied to its
rows, rows that reach the end token leave the batch (their cache rows are dropped),
and every row's randomness is a hash of its seed and position (``sampling``), so a
completion depends on its seed only — not on which other prompts happened to share its
batch, nor on the device — up to the rounding of its products: in bf16 oneDNN rounds by the
batch's shape on some CPUs, and a last-bit change can draw another token. On a CPU the
matrix products run the way measured fastest for the weights' precision (``cpu_linears``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from alignloop.records import GeneratedText
from alignloop.sampling import sample_tokens

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

Conversation = list[dict[str, str]]


@dataclass(frozen=True)
class SamplingParams:
    temperature: float = 0.9  # 0 means greedy
    top_p: float = 0.95
    max_new_tokens: int = 96


@dataclass
class DecodeStats:
    """Where an ``HFBackend``'s sampling time went, summed over its calls (a benchmark resets it).

    A decode step reads every weight once plus each live row's KV cache, so these counts and
    the model's sizes give the bytes a step reads; the prefill (prompt forwards) is kept apart.
    Wall-clock times: on a GPU, work the prefill queued may finish inside the first decode step.
    """

    prefill_seconds: float = 0.0  # prompt forwards, and copying a shared prompt's cache to its rows
    decode_seconds: float = 0.0  # the token-by-token loop: drawing tokens and the one-token forwards
    decode_forwards: int = 0  # one-token forwards (decode steps)
    row_steps: int = 0  # live rows summed over those forwards
    cached_positions: int = 0  # KV-cache positions they attended to: rows × cache length (padding included), summed


class GenerationBackend(Protocol):
    """What the generate stage and RL rollouts need from a sampler."""

    tokenizer: PreTrainedTokenizerBase

    def generate_ids(self, prompt_ids: list[list[int]], params: SamplingParams, seeds: list[int]) -> list[list[int]]:
        """Completion token ids per prompt row, the end token included when the row stopped."""
        ...

    def generate(
        self, conversations: list[Conversation], params: SamplingParams, seeds: list[int]
    ) -> list[GeneratedText]:
        """Sample one completion per conversation and decode it."""
        ...


@dataclass
class SampledRows:
    """Completions a sampler drew, and what its own forward said about each drawn token.

    The tensors are row-aligned with ``ids``, zero-padded to the longest completion (at least one
    column), float32; each is None unless asked for.
    """

    ids: list[list[int]]  # per row: the completion's token ids, the end token included when the row stopped
    logprobs: torch.Tensor | None = None  # (rows, T) each drawn token's log-prob, temperature applied, before top-p
    entropy: torch.Tensor | None = None  # (rows, T) entropy of the distribution each token was drawn from (nats)
    hidden: torch.Tensor | None = None  # (rows, T, hidden) the decoder's last hidden state that drew each token


class RolloutBackend(GenerationBackend, Protocol):
    """What RL rollouts need beyond ``GenerationBackend``: what the sampler's own forward said about
    the tokens it drew (log-probabilities for the sampling/training gap and the importance weights;
    entropy and hidden states where those stand in for a scoring pass), and the ids that pad and end a row.

    ``HFBackend`` implements it, and the RL trainer samples through one; ``VLLMBackend`` does not.
    """

    end_ids: set[int]  # every token id that ends a completion
    pad_id: int  # the id rollout tensors are padded with

    def sample(
        self,
        prompt_ids: list[list[int]],
        params: SamplingParams,
        seeds: list[int],
        *,
        with_logprobs: bool = True,
        with_entropy: bool = False,
        with_hidden: bool = False,
    ) -> SampledRows:
        """Completions per prompt row and, on request, the sampler's view of each drawn token."""
        ...


def encode_prompts(tokenizer: PreTrainedTokenizerBase, conversations: Sequence[Conversation]) -> list[list[int]]:
    """Token ids of each conversation with the chat template and the assistant's generation prompt.

    A tokenizer without a chat template gets the user turns joined as plain text.
    """
    if getattr(tokenizer, "chat_template", None):
        encoded = tokenizer.apply_chat_template(list(conversations), add_generation_prompt=True, tokenize=True)
        if isinstance(encoded, dict) or hasattr(encoded, "input_ids"):
            encoded = encoded["input_ids"]
        return [list(ids) for ids in encoded]
    texts = ["\n\n".join(m["content"] for m in conv) for conv in conversations]
    return [list(ids) for ids in tokenizer(texts, add_special_tokens=True)["input_ids"]]


def end_token_ids(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> set[int]:
    """Every token id that ends a completion (the tokenizer's and the generation config's)."""
    ids: set[int] = set()
    for source in (
        tokenizer.eos_token_id,
        getattr(getattr(model, "generation_config", None), "eos_token_id", None),
    ):
        if isinstance(source, int):
            ids.add(source)
        elif source:
            ids.update(int(i) for i in source)
    return ids


def decode_completion(
    tokenizer: PreTrainedTokenizerBase, prompt_ids: list[int], ids: list[int], end_ids: set[int]
) -> GeneratedText:
    """The text of a sampled completion and how it ended ("stop" at an end token, else "length")."""
    stopped = bool(ids) and ids[-1] in end_ids
    return GeneratedText(
        text=tokenizer.decode(ids, skip_special_tokens=True).strip(),
        prompt_tokens=len(prompt_ids),
        completion_tokens=len(ids),
        finish_reason="stop" if stopped else "length",
    )


class HFBackend:
    """Batched, KV-cached sampling on a transformers causal LM (optionally a peft model under training)."""

    def __init__(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, batch_size: int = 16) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.end_ids = end_token_ids(model, tokenizer)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else min(self.end_ids)
        self.stats = DecodeStats()

    def generate_ids(
        self,
        prompt_ids: list[list[int]],
        params: SamplingParams,
        seeds: list[int],
        *,
        on_rows: Callable[[int], None] | None = None,
    ) -> list[list[int]]:
        """Completion ids per prompt row; ``on_rows(n)`` is called after each batch with its row count
        (for a progress display)."""
        return self.sample(prompt_ids, params, seeds, with_logprobs=False, on_rows=on_rows).ids

    def sample(
        self,
        prompt_ids: list[list[int]],
        params: SamplingParams,
        seeds: list[int],
        *,
        with_logprobs: bool = True,
        with_entropy: bool = False,
        with_hidden: bool = False,
        on_rows: Callable[[int], None] | None = None,
    ) -> SampledRows:
        """Completions per prompt row and, on request, what the sampler's forward said about each token.

        The log-probability is that of the temperature-scaled distribution before top-p, as the
        RL trainer computes it, but from the sampler's own forward (its precision, its KV cache),
        so comparing the two measures the gap between sampling and training. The hidden state is
        the decoder's output (final norm applied) at the position whose logits drew the token:
        what a value head on the policy reads there.
        """
        import torch

        from alignloop.cpu_linears import sampler_linears

        if len(prompt_ids) != len(seeds):
            raise ValueError("one seed per prompt row is required")
        wanted = [name for name, on in (("logprobs", with_logprobs), ("entropy", with_entropy),
                                        ("hidden", with_hidden)) if on]  # fmt: skip
        # Similar lengths share a batch, so little compute goes to padding.
        order = sorted(range(len(prompt_ids)), key=lambda i: len(prompt_ids[i]))
        results: list[list[int]] = [[] for _ in prompt_ids]
        batches: list[tuple[list[int], dict[str, torch.Tensor]]] = []  # (rows, per-token values) of each batch
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.inference_mode(), sampler_linears(self.model, min(self.batch_size, len(order))):
                for start in range(0, len(order), self.batch_size):
                    rows = order[start : start + self.batch_size]
                    sampled, values = self._sample_batch(
                        [prompt_ids[i] for i in rows], params, [seeds[i] for i in rows], wanted
                    )
                    for i, ids in zip(rows, sampled):
                        results[i] = ids
                    batches.append((rows, values))
                    if on_rows is not None:
                        on_rows(len(rows))
        finally:
            self.model.train(was_training)
        longest = max([1, *(len(ids) for ids in results)])
        out = SampledRows(results)
        for name in wanted if batches else []:
            first = batches[0][1][name]
            padded = first.new_zeros((len(results), longest, *first.shape[2:]))
            for rows, values in batches:
                padded[rows, : values[name].shape[1]] = values[name]
            setattr(out, name, padded)
        return out

    def generate(
        self, conversations: list[Conversation], params: SamplingParams, seeds: list[int]
    ) -> list[GeneratedText]:
        prompt_ids = encode_prompts(self.tokenizer, conversations)
        outputs = self.generate_ids(prompt_ids, params, seeds)
        return [decode_completion(self.tokenizer, p, o, self.end_ids) for p, o in zip(prompt_ids, outputs)]

    def _forward(self, with_hidden: bool, **inputs: Any) -> tuple[torch.Tensor, torch.Tensor | None, Any]:
        """(logits at each row's last position, the hidden state there when asked, the KV cache)."""
        if not with_hidden:
            out = self.model(**inputs, use_cache=True, logits_to_keep=1)
            return out.logits[:, -1, :], None, out.cache
        from alignloop.models import decoder_and_head

        decoder, head = decoder_and_head(self.model)
        out = decoder(**inputs, use_cache=True)
        last = out.last_hidden_state[:, -1, :]
        return head(last), last, out.cache

    def _sample_batch(
        self, batch: list[list[int]], params: SamplingParams, seeds: list[int], wanted: list[str]
    ) -> tuple[list[list[int]], dict[str, torch.Tensor]]:
        """Each row's completion ids, and the ``wanted`` per-token values as (rows, T[, hidden]) tensors."""
        import torch

        from alignloop.kv_cache import preallocated_cache

        device = next(self.model.parameters()).device
        width = max(len(ids) for ids in batch)
        input_ids = torch.full((len(batch), width), self.pad_id, dtype=torch.long)
        attention = torch.zeros((len(batch), width), dtype=torch.long)
        for row, ids in enumerate(batch):
            input_ids[row, width - len(ids) :] = torch.tensor(ids)
            attention[row, width - len(ids) :] = 1
        input_ids, attention = input_ids.to(device), attention.to(device)
        positions = (attention.cumsum(-1) - 1).clamp(min=0)  # (batch, width)
        live_seeds = torch.tensor([int(s) for s in seeds], dtype=torch.long, device=device)  # (live,)
        end_ids = torch.tensor(sorted(self.end_ids), device=device)

        started = time.perf_counter()
        groups = shared_prompts(input_ids, attention, width)
        first = groups[0] if groups is not None else torch.arange(len(batch), device=device)
        logits, hidden, cache = self._forward(
            "hidden" in wanted,
            input_ids=input_ids[first],
            attention_mask=attention[first],
            position_ids=positions[first],
            cache=preallocated_cache(self.model.config, width + params.max_new_tokens),
        )  # (distinct prompts, vocab)
        if groups is not None:
            prompt_of_row = groups[1]
            cache.reorder_cache(prompt_of_row)
            logits = logits[prompt_of_row]  # (batch, vocab)
            hidden = hidden[prompt_of_row] if hidden is not None else None
        next_pos = positions[:, -1:] + 1  # (batch, 1)
        active = torch.arange(len(batch), device=device)  # row in the batch of each live row
        results: list[list[int]] = [[] for _ in batch]
        per_step: list[tuple[torch.Tensor, dict[str, torch.Tensor]]] = []  # (live rows, their values) per token
        self.stats.prefill_seconds += time.perf_counter() - started
        started = time.perf_counter()
        for step in range(params.max_new_tokens):
            tokens = sample_tokens(logits, params, live_seeds, step)  # (live,)
            finished = torch.isin(tokens, end_ids)
            for row, token in zip(active.tolist(), tokens.tolist()):
                results[row].append(token)
            if wanted:
                per_step.append((active, token_values(logits, tokens, hidden, params.temperature, wanted)))
            if step == params.max_new_tokens - 1:
                break
            if bool(finished.any()):
                keep = (~finished).nonzero().squeeze(-1)
                if keep.numel() == 0:
                    break
                cache.batch_select_indices(keep)
                tokens, attention, next_pos, live_seeds, active = (
                    tokens[keep],
                    attention[keep],
                    next_pos[keep],
                    live_seeds[keep],
                    active[keep],
                )
            attention = torch.cat([attention, attention.new_ones((len(active), 1))], dim=-1)
            logits, hidden, cache = self._forward(
                "hidden" in wanted,
                input_ids=tokens[:, None],
                attention_mask=attention,
                position_ids=next_pos,
                cache=cache,
            )
            next_pos = next_pos + 1
            self.stats.decode_forwards += 1
            self.stats.row_steps += attention.shape[0]
            self.stats.cached_positions += attention.numel()
        self.stats.decode_seconds += time.perf_counter() - started
        values: dict[str, torch.Tensor] = {}
        for name in wanted:
            shape = per_step[0][1][name].shape[1:]
            values[name] = torch.zeros((len(batch), len(per_step), *shape), device=device)
            for column, (rows, step_values) in enumerate(per_step):
                values[name][rows, column] = step_values[name]
        return results, values


def token_values(
    logits: torch.Tensor, tokens: torch.Tensor, hidden: torch.Tensor | None, temperature: float, wanted: list[str]
) -> dict[str, torch.Tensor]:
    """The ``wanted`` values of one drawn token per row, float32: ``logprobs`` and ``entropy`` of the
    temperature-scaled distribution (before top-p), and the ``hidden`` state that gave ``logits``."""
    from alignloop.losses import entropy, token_logprobs

    scaled = logits.float() / temperature if temperature else logits.float()  # (live, vocab)
    out = {}
    if "logprobs" in wanted:
        out["logprobs"] = token_logprobs(scaled, tokens)
    if "entropy" in wanted:
        out["entropy"] = entropy(scaled)
    if "hidden" in wanted:
        assert hidden is not None
        out["hidden"] = hidden.float()
    return out


def shared_prompts(
    input_ids: torch.Tensor, attention_mask: torch.Tensor, width: int
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Rows with the same prompt (the first ``width`` columns, ids and mask alike).

    Returns the first row of each distinct prompt and, per row, the index of its prompt
    among those; None when no two rows share a prompt.
    """
    import torch

    key = torch.cat([input_ids[:, :width], attention_mask[:, :width]], dim=1)
    distinct, inverse = torch.unique(key, dim=0, return_inverse=True)
    if distinct.shape[0] == key.shape[0]:
        return None
    rows = torch.arange(key.shape[0], device=key.device)
    first = torch.full((distinct.shape[0],), key.shape[0], dtype=torch.long, device=key.device)
    first = first.scatter_reduce(0, inverse, rows, reduce="amin")
    return first, inverse
