"""Drawing one token per row from next-token logits: temperature, top-p, and randomness that
depends on the row's seed, position and token only.

Sampling is Gumbel-max: each candidate token's scaled logit plus Gumbel noise, the largest
wins, which is exactly categorical sampling. The noise of token ``t`` at a row's ``step``-th
position is a hash of (seed, step, t) (``_row_keys``, ``_uniform``): integer arithmetic, the
same on every device and in every batch, and computed only for the tokens that can win. A
per-row ``torch.Generator`` did the same job with one call per row and 49k uniforms per row
and step — a fifth of a decode step on a 2-core CPU, and one kernel launch per row on a GPU.
Keying the noise by token id (not by rank, as inverse-CDF sampling over a sorted list would)
keeps a row's draw unchanged when batch padding moves its logits in the last bits.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

    from alignloop.backends import SamplingParams

NUCLEUS_CANDIDATES = (128, 1024)  # top tokens searched for the nucleus, widening, before the whole row
_MASK = 0xFFFFFFFF


def _mul32(x: torch.Tensor, constant: int) -> torch.Tensor:
    """The low 32 bits of ``x · constant`` for uint32 values held in int64, without int64 overflow
    (the constant is split in 16-bit halves, so no product exceeds 2^48)."""
    low = x * (constant & 0xFFFF)
    high = ((x * (constant >> 16)) & 0xFFFF) << 16
    return (low + high) & _MASK


def _mix32(x: torch.Tensor) -> torch.Tensor:
    """A 32-bit integer hash with good avalanche (C. Wellons' "lowbias32" constants)."""
    x = x ^ (x >> 16)
    x = _mul32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _mul32(x, 0x846CA68B)
    return x ^ (x >> 16)


def _row_keys(seeds: torch.Tensor, step: int) -> torch.Tensor:
    """(rows,) uint32 values in int64: a hash of each row's int64 seed and ``step``."""
    h = _mix32(seeds & _MASK)
    h = _mix32(h ^ ((seeds >> 32) & _MASK))
    return _mix32(h ^ (step & _MASK))


def _uniform(keys: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """float64 in (0, 1), shaped like ``tokens`` (rows, n): a hash of each row's key and token id."""
    h = _mix32(_mix32(keys[:, None] ^ (tokens & _MASK)))
    return (h.double() + 0.5) / 2.0**32


def _gumbel(keys: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """Gumbel noise (float32) for the token ids ``tokens`` (rows, n) of the rows keyed ``keys`` (rows,)."""
    return (-(-_uniform(keys, tokens).log()).log()).float()


def sample_tokens(logits: torch.Tensor, params: SamplingParams, seeds: torch.Tensor, step: int) -> torch.Tensor:
    """One token per row of ``logits`` (rows, vocab), the row's ``step``-th, from its seed (``seeds``, (rows,) int64).

    A token is in the top-p nucleus unless the tokens ranked above it already hold ``top_p``
    of the probability (so the top token always is). The nucleus is looked for among each
    row's 128 largest logits, then among the 1024 largest for the rows whose candidates hold
    less than ``top_p``, then in the whole sorted row (``NUCLEUS_CANDIDATES``): for SmolLM2 at
    temperature 0.9 and top-p 0.95 it held more than 128 tokens in 1 row of 8 and more than
    1024 in 1 of 170. With ``top_p`` 1 every token can win (``_sample_whole``).
    """
    import torch

    if params.temperature == 0:
        return logits.argmax(-1)
    scaled = logits.float() / params.temperature  # (rows, vocab)
    rows, vocab = scaled.shape
    keys = _row_keys(seeds, step)  # (rows,)
    log_norm = torch.logsumexp(scaled, dim=-1, keepdim=True)  # (rows, 1)
    if params.top_p >= 1.0:
        return _sample_whole(scaled, log_norm, keys)
    tokens = torch.empty(rows, dtype=torch.long, device=scaled.device)
    todo = torch.arange(rows, device=scaled.device)  # rows whose nucleus is not found yet
    for count in [min(c, vocab) for c in NUCLEUS_CANDIDATES] + [vocab]:
        searched = scaled if len(todo) == rows else scaled[todo]
        top, top_idx = searched.topk(count, dim=-1)  # (todo, count), largest first
        probs = (top - log_norm[todo]).exp()
        before = probs.cumsum(-1) - probs  # mass ranked above each candidate
        found = (before[:, -1] + probs[:, -1] >= params.top_p) | (count == vocab)
        done, top, top_idx = todo[found], top[found], top_idx[found]
        kept = top.masked_fill(before[found] >= params.top_p, float("-inf"))
        noisy = kept + _gumbel(keys[done], top_idx)
        tokens[done] = top_idx.gather(-1, noisy.argmax(-1, keepdim=True)).squeeze(-1)
        todo = todo[~found]
        if todo.numel() == 0:
            break
    return tokens


def _sample_whole(scaled: torch.Tensor, log_norm: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """Gumbel-max over every token, split exactly in two so that the whole vocabulary's noise is
    computed only where needed: with probability m (the mass of the ``NUCLEUS_CANDIDATES[0]``
    largest tokens, the head) among the head, otherwise among the tail (every other token)."""
    import torch

    rows, vocab = scaled.shape
    top, top_idx = scaled.topk(min(NUCLEUS_CANDIDATES[0], vocab), dim=-1)  # (rows, head)
    head_mass = (top - log_norm).exp().sum(-1)  # (rows,)
    no_token = torch.full((rows, 1), _MASK, dtype=torch.long, device=scaled.device)  # an id no vocabulary has
    in_tail = _uniform(keys, no_token).squeeze(-1) >= head_mass  # (rows,)
    tokens = top_idx.gather(-1, (top + _gumbel(keys, top_idx)).argmax(-1, keepdim=True)).squeeze(-1)
    tail = in_tail.nonzero().squeeze(-1)
    if tail.numel() and top_idx.shape[-1] < vocab:  # a head of the whole vocabulary leaves no tail (rounding aside)
        every = torch.arange(vocab, device=scaled.device).expand(len(tail), vocab)
        noisy = (scaled[tail] + _gumbel(keys[tail], every)).scatter_(-1, top_idx[tail], float("-inf"))
        tokens[tail] = noisy.argmax(-1)
    return tokens
