"""The evaluate stage: log-probabilities, paired statistics, several samples per prompt, best-of-N."""

from __future__ import annotations

import json
import math
import random
import statistics
from pathlib import Path

import pytest
import torch

from alignloop.eval_sampling import DrawnSamples, PolicySamples, completion_logprobs, row_seeds, sample_policy
from alignloop.evaluate import (
    best_of_n_extra,
    best_of_n_kl,
    best_of_n_rows,
    best_of_n_windows,
    evaluate_models,
    paired_diff,
    per_prompt_means,
)
from alignloop.models import load_policy


def test_completion_logprobs_sum_each_completion_at_the_temperature(tiny_lm: Path) -> None:
    model, tokenizer = load_policy(str(tiny_lm), dtype="float32")
    prompts = [[5, 6, 7, 8, 9], [10, 11]]  # different lengths: left padding
    completions = [[20, 21, 22], [23]]
    got = completion_logprobs(model, prompts, completions, tokenizer.pad_token_id, temperature=0.7)
    want = []
    with torch.no_grad():
        for prompt, completion in zip(prompts, completions):
            ids = torch.tensor([prompt + completion], device=model.device)
            logits = model(input_ids=ids).logits[0, len(prompt) - 1 : -1] / 0.7
            chosen = torch.tensor(completion, device=model.device)[:, None]
            want.append(logits.log_softmax(-1).gather(-1, chosen).sum().item())
    assert got == pytest.approx(want, abs=1e-4)


def test_paired_difference_is_the_mean_of_per_prompt_differences_with_a_t_interval() -> None:
    # Differences 1, 2, 3, 4: mean 2.5, sd √(5/3), t(0.975, 3) = 3.182446305 → half-width 3.1824·1.2910/2.
    mean, (low, high) = paired_diff([2.0, 4.0, 6.0, 8.0], [1.0, 2.0, 3.0, 4.0])
    half = 3.182446305284263 * math.sqrt(5 / 3) / 2
    assert mean == pytest.approx(2.5)
    assert (low, high) == pytest.approx((2.5 - half, 2.5 + half))


def test_paired_difference_cancels_what_the_prompts_share() -> None:
    easy_and_hard = [10.0, -10.0, 5.0, -5.0]
    mean, (low, high) = paired_diff([x + 1.0 for x in easy_and_hard], easy_and_hard)
    assert mean == pytest.approx(1.0) and low == pytest.approx(1.0) and high == pytest.approx(1.0)


def test_best_of_n_kl_is_log_n_minus_n_minus_one_over_n() -> None:
    assert best_of_n_kl(2) == pytest.approx(math.log(2) - 0.5)  # 0.1931
    assert best_of_n_kl(16) == pytest.approx(2.7726 - 0.9375, abs=1e-4)


def test_best_of_n_windows_start_at_each_own_sample_and_wrap_round_the_pool() -> None:
    assert best_of_n_windows(4, 4, 2) == [[0, 1], [1, 2], [2, 3], [3, 0]]
    assert best_of_n_windows(3, 2, 3) == [[0, 1, 2], [1, 2, 0]]
    with pytest.raises(ValueError, match="cannot hold"):
        best_of_n_windows(3, 2, 4)


def test_best_of_n_draws_only_the_candidates_its_own_samples_lack() -> None:
    assert best_of_n_extra(2, 4) == 2 and best_of_n_extra(8, 4) == 0 and best_of_n_extra(1, 2) == 1


def test_best_of_n_rows_pick_within_each_prompts_pool() -> None:
    # Two prompts, two own samples each (a0 a1 | b0 b1), best-of-3: one extra candidate each (x | y).
    first = PolicySamples(2, [[1]] * 4, [[5], [6, 7], [8], [9]], ["a0", "a1", "b0", "b1"], [])
    extra = PolicySamples(1, [[1]] * 2, [[10, 11, 12], [13]], ["x", "y"], [])
    texts, rewards, lengths = best_of_n_rows(first, [0.5, 0.7, 0.2, 0.2], extra, [0.9, -1.0], 3)
    assert texts == ["x", "x", "b0", "b1"] and rewards == [0.9, 0.9, 0.2, 0.2] and lengths == [3, 3, 1, 1]
    # Four own samples and best-of-2: no extra candidates, each row against the next sample.
    first = PolicySamples(4, [[1]] * 4, [[5]] * 4, ["s0", "s1", "s2", "s3"], [])
    none = PolicySamples(0, [], [], [], [])
    texts, _, _ = best_of_n_rows(first, [0.1, 0.4, 0.3, 0.2], none, [], 2)
    assert texts == ["s1", "s1", "s2", "s3"]


def test_best_of_n_from_overlapping_windows_estimates_the_expected_best_without_bias() -> None:
    # The best of n uniform draws has mean n / (n + 1); the windows share candidates but each holds n
    # distinct independent samples, so the mean over prompts and rows must land there.
    rng = random.Random(0)
    samples, n, prompts = 8, 4, 3000
    first = PolicySamples(samples, [], [[1]] * (samples * prompts), ["t"] * (samples * prompts), [])
    rewards = [rng.random() for _ in range(samples * prompts)]
    _, best, _ = best_of_n_rows(first, rewards, PolicySamples(0, [], [], [], []), [], n)
    assert statistics.fmean(best) == pytest.approx(n / (n + 1), abs=0.005)


def test_per_prompt_means_average_consecutive_samples() -> None:
    assert per_prompt_means([1.0, 3.0, 10.0, 20.0], 2) == [2.0, 15.0]
    assert per_prompt_means([1.0, 2.0], 1) == [1.0, 2.0]


@pytest.fixture(scope="module")
def reward_run(tiny_encoder: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    out = tmp_path_factory.mktemp("rm")
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_encoder, num_labels=1)
    model.save_pretrained(out / "model")
    AutoTokenizer.from_pretrained(tiny_encoder).save_pretrained(out / "model")
    (out / "normalization.json").write_text(json.dumps({"mean": 0.0, "std": 1.0}), encoding="utf-8")
    return out


CONVERSATIONS = [[{"role": "user", "content": text}] for text in ("Say something kind.", "Explain the rain.", "Hi")]


def test_several_samples_per_prompt_and_best_of_n_end_to_end(tiny_lm: Path, reward_run: Path) -> None:
    report = evaluate_models(
        [str(tiny_lm), f"{tiny_lm}/"],  # the same model twice
        str(reward_run),
        CONVERSATIONS,
        judge="alignloop.judges:length",
        max_new_tokens=5,
        k=2,
        best_of=3,
    )
    base, same, best = report.models
    assert report.samples_per_prompt == 2 and report.best_of == 3
    # The same model with the same seeds: the same samples, so no difference and every prompt a tie.
    assert same.reward_diff == pytest.approx(0.0, abs=1e-6) and same.win_rate == pytest.approx(0.5)
    assert same.judge_diff == pytest.approx(0.0) and same.kl == pytest.approx(0.0, abs=1e-4)
    assert base.reward_diff is None and base.best_of is None
    # Best-of-3 includes each of the base model's own samples among its candidates: never worse.
    assert best.model == "best-of-3" and best.best_of == 3
    assert best.reward_diff is not None and best.reward_diff >= 0 and best.win_rate >= 0.5
    assert best.reward_mean >= base.reward_mean
    assert best.kl == pytest.approx(math.log(3) - 2 / 3)
    assert best.judge_mean is not None and best.judge_diff_ci is not None
    assert set(report.samples[0]) >= {"prompt", "best-of-3", "reward:best-of-3"}


def test_a_prompts_score_is_the_mean_of_its_samples(tiny_lm: Path, reward_run: Path) -> None:
    from alignloop.reward import RewardModel

    one = evaluate_models([str(tiny_lm)], str(reward_run), CONVERSATIONS, max_new_tokens=5, k=2)
    model, tokenizer = load_policy(str(tiny_lm))
    from alignloop.backends import SamplingParams, encode_prompts

    drawn = sample_policy(
        model,
        tokenizer,
        encode_prompts(tokenizer, CONVERSATIONS),
        SamplingParams(temperature=0.7, top_p=1.0, max_new_tokens=5),
        row_seeds(0, len(CONVERSATIONS), 2),
    )
    prompts = [c[0]["content"] for c in CONVERSATIONS for _ in range(2)]
    rows = RewardModel.load(reward_run).score(prompts, drawn.texts)
    means = [(rows[0] + rows[1]) / 2, (rows[2] + rows[3]) / 2, (rows[4] + rows[5]) / 2]
    assert one.models[0].reward_mean == pytest.approx(sum(means) / 3, abs=1e-5)
    low, high = one.models[0].reward_ci
    assert (high - low) / 2 == pytest.approx(4.302652729911275 * statistics.stdev(means) / math.sqrt(3), abs=1e-5)


def test_evaluate_command_takes_k_and_best_of(tiny_lm: Path, reward_run: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from alignloop.cli import app

    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": c[0]["content"]}) + "\n" for c in CONVERSATIONS))
    result = CliRunner().invoke(
        app,
        [
            "evaluate", "--models", str(tiny_lm), "--reward-model", str(reward_run), "--prompts", str(prompts),
            "-k", "2", "--best-of", "2", "--max-new-tokens", "3", "--output", str(tmp_path / "e"),
        ],
        env={"COLUMNS": "160"},  # the table's model column whole
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    saved = json.loads((tmp_path / "e" / "evaluation.json").read_text())
    assert saved["samples_per_prompt"] == 2 and [m["model"] for m in saved["models"]] == [str(tiny_lm), "best-of-2"]
    assert "best-of-2" in result.output


def test_sample_policy_tells_the_progress_display_of_every_batch_and_samples_the_same(tiny_lm: Path) -> None:
    from alignloop.backends import SamplingParams, encode_prompts

    model, tokenizer = load_policy(tiny_lm, dtype="bfloat16")  # scored by a pass of its own after sampling
    prompt_ids = encode_prompts(tokenizer, CONVERSATIONS)
    params = SamplingParams(temperature=1.0, top_p=1.0, max_new_tokens=4)
    seeds = row_seeds(0, len(CONVERSATIONS), 2)
    told: list[int] = []
    watched = sample_policy(model, tokenizer, prompt_ids, params, seeds, batch_size=2, on_rows=told.append)
    unwatched = sample_policy(model, tokenizer, prompt_ids, params, seeds, batch_size=2)
    assert sum(told) == 2 * len(seeds) and len(told) == 6  # three batches of sampling, three of scoring
    assert watched.texts == unwatched.texts and watched.logp == pytest.approx(unwatched.logp)


def test_evaluate_with_progress_shows_a_bar_per_step(
    tiny_lm: Path, reward_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    second = f"{tiny_lm}/"  # the same model by another name: the first is the KL reference, which needs no bar
    evaluate_models([str(tiny_lm), second], str(reward_run), CONVERSATIONS, max_new_tokens=3, progress=True)
    err = capsys.readouterr().err
    for step in (f"sample and score {tiny_lm}", f"KL of {second}", "reward of"):
        assert step in err, err
    assert f"KL of {tiny_lm} " not in err


def test_evaluations_that_share_drawn_samples_sample_each_model_once_and_report_the_same(
    tiny_lm: Path, reward_run: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import alignloop.models

    loaded: list[str] = []
    real_load = alignloop.models.load_policy

    def counting_load(path: str, **kwargs: object) -> object:
        loaded.append(path)
        return real_load(path, **kwargs)

    monkeypatch.setattr(alignloop.models, "load_policy", counting_load)
    start, pooled, own = str(tiny_lm), f"{tiny_lm}/", f"{tiny_lm}//"  # one model under three names
    settings: dict = dict(max_new_tokens=4, k=2)
    shared = DrawnSamples()
    evaluate_models(
        [pooled, start], str(reward_run), CONVERSATIONS, judge="alignloop.judges:length", reuse=shared, **settings
    )
    loaded.clear()
    second = evaluate_models(
        [pooled, start, own],
        str(reward_run),
        CONVERSATIONS,
        judge="alignloop.judges:sentiment",
        reuse=shared,
        **settings,
    )
    assert len(loaded) == 2  # the new model, and the reference for its KL: 4 loads without the shared samples
    alone = evaluate_models(
        [pooled, start, own], str(reward_run), CONVERSATIONS, judge="alignloop.judges:sentiment", **settings
    )
    assert second.to_json() == alone.to_json()
    loaded.clear()
    evaluate_models([pooled, start], str(reward_run), CONVERSATIONS, reuse=shared, max_new_tokens=5, k=2)
    assert len(loaded) == 3  # other settings: both drawn afresh, and the reference loaded again for the KL


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_sampled_log_probabilities_are_those_a_scoring_pass_gives(
    tiny_lm: Path, dtype: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import alignloop.eval_sampling as eval_sampling
    from alignloop.backends import SamplingParams, encode_prompts

    model, tokenizer = load_policy(tiny_lm, dtype=dtype)
    prompt_ids = encode_prompts(tokenizer, CONVERSATIONS)
    params = SamplingParams(temperature=0.7, top_p=1.0, max_new_tokens=6)
    seeds = row_seeds(0, len(CONVERSATIONS), 3)
    passes: list[int] = []
    monkeypatch.setattr(
        eval_sampling, "completion_logprobs", lambda *a, **kw: passes.append(1) or completion_logprobs(*a, **kw)
    )
    told: list[int] = []
    batch = 6  # two whole groups of 3
    drawn = sample_policy(model, tokenizer, prompt_ids, params, seeds, batch_size=batch, on_rows=told.append)
    # in the sampler's batches: a bf16 product's rounding depends on the batch's shape
    scored = completion_logprobs(model, drawn.prompt_ids, drawn.completion_ids, tokenizer.pad_token_id, 0.7, rows=batch)
    assert sum(told) == 2 * len(seeds)  # sampled and scored, whichever way
    assert drawn.logp == pytest.approx(scored, abs=1e-4 if dtype == "float32" else 0)
    assert len(passes) == (0 if dtype == "float32" else 1)  # float32: the sampler's own, which differ by rounding


def test_large_sampling_batches_are_scored_in_smaller_passes_which_the_kl_pass_shares(
    tiny_lm: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import alignloop.eval_sampling as eval_sampling
    from alignloop.backends import SamplingParams, encode_prompts

    monkeypatch.setattr(eval_sampling, "SCORING_ROWS", 2)  # rounded up to a whole group of 3
    passes: list[int] = []
    monkeypatch.setattr(
        eval_sampling,
        "completion_logprobs",
        lambda *a, **kw: passes.append(kw["rows"]) or completion_logprobs(*a, **kw),
    )
    model, tokenizer = load_policy(tiny_lm, dtype="bfloat16")  # scored by a pass, not by the sampler
    prompt_ids = encode_prompts(tokenizer, CONVERSATIONS)
    params = SamplingParams(temperature=0.7, top_p=1.0, max_new_tokens=6)
    seeds = row_seeds(0, len(CONVERSATIONS), 3)
    drawn = sample_policy(model, tokenizer, prompt_ids, params, seeds, batch_size=6)
    kl = eval_sampling.kl_per_row(model, prompt_ids, drawn, tokenizer.pad_token_id, 0.7, batch_size=6)
    assert passes == [3, 3]  # the model's own pass, then the reference's, in the same batches
    assert kl == [0.0] * len(seeds)


def test_a_scoring_call_reorders_each_frozen_weight_once_for_all_its_batches(
    tiny_lm: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import alignloop.cpu_linears as cpu_linears

    monkeypatch.setattr(cpu_linears, "float32_kernel", lambda: "onednn")
    reordered: list[torch.Tensor] = []
    reorder = cpu_linears._reorder
    monkeypatch.setattr(cpu_linears, "_reorder", lambda weight, rows: reordered.append(weight) or reorder(weight, rows))
    model, tokenizer = load_policy(str(tiny_lm), dtype="float32", purpose="sampling")  # frozen
    plain = completion_logprobs(model, [[5, 6], [7, 8, 9]], [[20, 21], [22]], tokenizer.pad_token_id, 0.7, rows=1)
    assert reordered and len(reordered) == len({id(w) for w in reordered})  # two batches, one reorder each
    monkeypatch.setattr(cpu_linears, "float32_kernel", lambda: "weight_first")  # scoring keeps the plain linears
    again = completion_logprobs(model, [[5, 6], [7, 8, 9]], [[20, 21], [22]], tokenizer.pad_token_id, 0.7, rows=1)
    assert plain == pytest.approx(again, abs=1e-4)
