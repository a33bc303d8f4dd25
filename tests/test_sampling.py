"""Token sampling: exact top-p proportions, and randomness keyed by seed, position and token alone."""

from __future__ import annotations

import pytest
import torch

from alignloop.backends import SamplingParams
from alignloop.sampling import NUCLEUS_CANDIDATES, _row_keys, _uniform, sample_tokens


@pytest.mark.parametrize("top_p", [0.5, 0.9, 0.95, 1.0])
def test_draws_come_from_the_top_p_nucleus_in_its_proportions(top_p: float) -> None:
    torch.manual_seed(0)
    # peaked rows (nucleus among the first candidates) and flat ones (the wider searches, then the whole row)
    logits = torch.randn(5, 5000) * torch.tensor([8.0, 3.0, 1.0, 0.5, 0.05])[:, None]
    draws, sizes = 2000, []
    for row in logits:
        probs = row.softmax(-1)
        ranked = probs.argsort(descending=True)
        in_nucleus = torch.zeros(5000, dtype=torch.bool)
        in_nucleus[ranked[(probs[ranked].cumsum(0) - probs[ranked]) < top_p]] = True
        sizes.append(int(in_nucleus.sum()))
        seeds = torch.arange(draws)
        tokens = sample_tokens(row.expand(draws, -1), SamplingParams(temperature=1.0, top_p=top_p), seeds, step=0)
        assert in_nucleus[tokens].all()
        # proportions by rank bucket (first token, second, 3-10, 11-100, 101-1000, the rest) within the nucleus
        expected = torch.where(in_nucleus, probs, 0.0)[ranked] / probs[in_nucleus].sum()
        observed = torch.bincount(ranked.argsort()[tokens], minlength=5000) / draws
        edges = [0, 1, 2, 10, 100, 1000, 5000]
        buckets = [(observed[a:b].sum() - expected[a:b].sum()).abs() for a, b in zip(edges, edges[1:])]
        assert 0.5 * sum(buckets) < 0.06, f"total variation {0.5 * sum(buckets):.3f} (nucleus of {sizes[-1]})"
    if top_p < 1.0:
        assert min(sizes) < NUCLEUS_CANDIDATES[0] and max(sizes) > NUCLEUS_CANDIDATES[-1]  # every search was taken


def test_the_hash_is_uniform_and_separates_seeds_steps_and_tokens() -> None:
    seeds = torch.tensor([0, 1, 2**32, 2**32 + 1, 2**62 + 12345, -7])  # high bits and a negative seed count too
    keys = torch.stack([_row_keys(seeds, step) for step in (0, 1, 2**31)])
    assert len(set(keys.flatten().tolist())) == keys.numel()
    u = _uniform(_row_keys(torch.arange(200), 3), torch.arange(500).expand(200, 500))
    assert 0 < u.min() and u.max() < 1
    # 100 000 values: each decile holds 10 % within 0.5 % (binomial sd 0.09 %)
    counts = torch.bincount((u * 10).long().flatten(), minlength=10) / u.numel()
    assert (counts - 0.1).abs().max() < 0.005


def test_a_row_draws_the_same_token_whatever_else_is_in_the_batch() -> None:
    torch.manual_seed(1)
    logits = torch.randn(6, 3000) * 2
    params = SamplingParams(temperature=0.8, top_p=0.9)
    together = sample_tokens(logits, params, torch.arange(6) * 1000, step=5)
    alone = [sample_tokens(logits[i : i + 1], params, torch.tensor([i * 1000]), step=5).item() for i in range(6)]
    assert together.tolist() == alone
    assert sample_tokens(logits, params, torch.arange(6) * 1000, step=6).tolist() != together.tolist()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_a_gpu_draws_what_the_cpu_draws_from_the_same_logits() -> None:
    torch.manual_seed(2)
    logits = torch.randn(8, 5000) * 3
    seeds = torch.arange(8) * 7919
    for top_p in (0.9, 1.0):
        params = SamplingParams(temperature=0.9, top_p=top_p)
        cpu = sample_tokens(logits, params, seeds, step=3)
        gpu = sample_tokens(logits.cuda(), params, seeds.cuda(), step=3)
        assert gpu.cpu().tolist() == cpu.tolist()


def test_a_vocabulary_smaller_than_the_head_is_sampled_in_its_proportions() -> None:
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0]]).expand(4000, -1)
    tokens = sample_tokens(logits, SamplingParams(temperature=1.0, top_p=1.0), torch.arange(4000), step=0)
    observed = torch.bincount(tokens, minlength=4) / 4000
    assert (observed - logits[0].softmax(-1)).abs().max() < 0.03
