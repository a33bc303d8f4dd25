"""DPO on the tiny random LM: it learns a synthetic preference, caches the reference, resumes exactly."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest
import torch

from alignloop.errors import AlignloopError
from alignloop.records import Comparison
from alignloop.rl import dpo, dpo_data, dpo_logps
from alignloop.rl.dpo_config import DPOConfig
from alignloop.runs import RunDir

GOOD = ["I love this wonderful idea", "Thank you so much, that was very helpful", "The weather is lovely today"]
BAD = ["This is terrible and sad", "Sorry, I cannot help", "awful sad news"]


def synthetic_pairs(n: int = 80) -> list[Comparison]:
    """A preference the tiny model cannot know in advance: cheerful answers beat gloomy ones."""
    rng = random.Random(0)
    return [
        Comparison(
            prompt=f"Question {i}: tell me something",
            chosen=rng.choice(GOOD),
            rejected=rng.choice(BAD),
            split="test" if i % 5 == 0 else "train",
        )
        for i in range(n)
    ]


def config(tiny_lm: Path, out: Path, **fields: object) -> DPOConfig:
    base = dict(policy=str(tiny_lm), output=str(out), learning_rate=1e-3, batch_size=8, eval_every=4, save_every=4)
    return DPOConfig(**{**base, **fields})


def naive_logps(model: torch.nn.Module, prompt: list[int], completion: list[int]) -> float:
    """log p(completion | prompt) from one unpadded forward over full logits."""
    ids = torch.tensor([prompt + completion], device=model.device)
    logits = model(input_ids=ids).logits[0, len(prompt) - 1 : -1]
    return logits.log_softmax(-1).gather(-1, torch.tensor(completion, device=model.device)[:, None]).sum().item()


def test_batched_log_probs_mask_the_prompt_and_ignore_padding(tiny_lm: Path) -> None:
    from alignloop.models import load_policy

    model, tokenizer = load_policy(str(tiny_lm), dtype="float32")
    encoded = dpo_data.encode_pairs(tokenizer, synthetic_pairs(3), max_length=64, max_prompt_length=32)
    encoded[1].prompt = encoded[1].prompt[3:]  # prompts of different lengths force left padding
    batch = {k: v.to(model.device) for k, v in dpo_data.collate(encoded, tokenizer.pad_token_id).items()}
    with torch.no_grad():
        got = dpo_logps.batch_logps(model, batch)
        want = [naive_logps(model, p.prompt, p.chosen) for p in encoded]
        want += [naive_logps(model, p.prompt, p.rejected) for p in encoded]
    assert got.tolist() == pytest.approx(want, abs=1e-4)


def test_gradients_through_the_shared_prompt_cache_equal_those_of_full_sequences(tiny_lm: Path) -> None:
    from alignloop.models import load_policy

    model, tokenizer = load_policy(str(tiny_lm), dtype="float32")
    encoded = dpo_data.encode_pairs(tokenizer, synthetic_pairs(2), max_length=64, max_prompt_length=32)
    batch = {k: v.to(model.device) for k, v in dpo_data.collate(encoded, tokenizer.pad_token_id).items()}
    dpo_logps.batch_logps(model, batch).sum().backward()
    shared = {name: p.grad.clone() for name, p in model.named_parameters()}
    model.zero_grad()
    total = torch.zeros((), device=model.device)
    for pair in encoded:
        for completion in (pair.chosen, pair.rejected):
            ids = torch.tensor([pair.prompt + completion], device=model.device)
            logits = model(input_ids=ids).logits[0, len(pair.prompt) - 1 : -1]
            chosen = torch.tensor(completion, device=model.device)[:, None]
            total = total + logits.log_softmax(-1).gather(-1, chosen).sum()
    total.backward()
    for name, p in model.named_parameters():
        assert torch.allclose(shared[name], p.grad, atol=1e-4), name
    assert shared["model.layers.0.self_attn.q_proj.weight"].abs().sum() > 0  # the prompt pass got gradient


def test_prompt_uses_the_chat_template_and_completions_end_with_the_end_token(tiny_lm: Path) -> None:
    from alignloop.models import load_tokenizer

    tokenizer = load_tokenizer(str(tiny_lm))
    pair = Comparison(prompt="hi", chosen="yes", rejected="no", messages=[{"role": "user", "content": "hello there"}])
    (encoded,) = dpo_data.encode_pairs(tokenizer, [pair], max_length=64, max_prompt_length=32)
    assert tokenizer.decode(encoded.prompt) == "<|im_start|>user\nhello there<|im_end|>\n<|im_start|>assistant\n"
    assert encoded.chosen[-1] == encoded.rejected[-1] == tokenizer.eos_token_id


def test_dpo_learns_a_synthetic_preference_on_held_out_prompts(tiny_lm: Path, tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM

    result = dpo.train_dpo(config(tiny_lm, tmp_path / "run", epochs=3), pairs=synthetic_pairs())
    assert result.stop_reason == "completed" and result.steps == 24
    assert result.eval_metrics["eval/accuracy"] >= 0.8  # 16 held-out pairs; chance is 0.5
    assert result.eval_metrics["eval/margin"] > 0
    metrics = RunDir(result.run_dir).read_metrics()
    assert {"dpo/loss", "dpo/accuracy", "dpo/margin", "dpo/chosen_reward", "dpo/rejected_reward"} <= set(metrics[0])
    assert metrics[-2]["dpo/loss"] < metrics[0]["dpo/loss"]
    assert sorted(p.name for p in (result.run_dir / "plots").iterdir()) == [
        "dpo_accuracy.png",
        "dpo_loss.png",
        "dpo_rewards.png",
    ]
    before = AutoModelForCausalLM.from_pretrained(tiny_lm).state_dict()
    after = AutoModelForCausalLM.from_pretrained(result.run_dir / "model").state_dict()  # merged: a plain policy
    changed = [name for name in before if not torch.equal(before[name], after[name])]
    assert changed and all("q_proj" in name or "v_proj" in name for name in changed)


def test_reference_log_probs_are_computed_once_and_untouched_by_training(
    tiny_lm: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from alignloop.models import load_tokenizer

    pairs = synthetic_pairs(40)
    cfg = config(tiny_lm, tmp_path / "run", max_steps=3, merge_lora=False, dtype="float32")  # as recomputed here
    dpo.train_dpo(cfg, pairs=pairs)
    cached = torch.load(tmp_path / "run" / dpo_logps.REFERENCE_CACHE, weights_only=True)["logps"]

    # The reference after training, from the saved adapter with the adapter disabled, gives the cached numbers.
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_lm), tmp_path / "run" / "model").eval()
    tokenizer = load_tokenizer(str(tiny_lm))
    train, held_out = dpo_data.split_pairs(pairs, cfg.eval_fraction, cfg.seed)
    encoded = dpo_data.encode_pairs(tokenizer, train + held_out, cfg.max_length, cfg.max_prompt_length)
    batch = dpo_data.collate(encoded, tokenizer.pad_token_id)
    with torch.no_grad(), model.disable_adapter():
        reference = dpo_logps.batch_logps(model, batch)
    with torch.no_grad():
        policy = dpo_logps.batch_logps(model, batch)
    n = len(encoded)
    assert torch.allclose(reference, torch.cat([cached[:, 0], cached[:, 1]]), atol=1e-4)
    assert not torch.allclose(policy[:n], cached[:, 0], atol=1e-4)

    # Resuming to more steps reuses the cache: the reference model is never asked for again.
    def no_reference(*args: object, **kwargs: object) -> None:
        raise AssertionError("reference log-probs were recomputed")

    monkeypatch.setattr(dpo_logps, "reference_model", no_reference)
    result = dpo.train_dpo(cfg.model_copy(update={"max_steps": 5, "epochs": 2.0}), pairs=pairs, resume=True)
    assert result.steps == 5


def test_resume_after_an_interruption_equals_an_uninterrupted_run(
    tiny_lm: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pairs = synthetic_pairs(40)
    whole = dpo.train_dpo(config(tiny_lm, tmp_path / "whole", max_steps=6, save_every=2, epochs=2.0), pairs=pairs)

    log = RunDir.log

    def crash_at_step_5(self: RunDir, record: dict) -> None:
        log(self, record)
        if record.get("step") == 5:
            raise KeyboardInterrupt

    monkeypatch.setattr(RunDir, "log", crash_at_step_5)
    cfg = config(tiny_lm, tmp_path / "cut", max_steps=6, save_every=2, epochs=2.0)
    with pytest.raises(KeyboardInterrupt):
        dpo.train_dpo(cfg, pairs=pairs)
    monkeypatch.setattr(RunDir, "log", log)
    resumed = dpo.train_dpo(cfg, pairs=pairs, resume=True)

    assert resumed.steps == whole.steps == 6
    a = torch.load(whole.run_dir / "checkpoints" / "step-00000006" / "state.pt", weights_only=False)["weights"]
    b = torch.load(resumed.run_dir / "checkpoints" / "step-00000006" / "state.pt", weights_only=False)["weights"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    strip = lambda rows: [{k: v for k, v in r.items() if not k.startswith("time/")} for r in rows]  # noqa: E731
    assert strip(RunDir(whole.run_dir).read_metrics()) == strip(RunDir(resumed.run_dir).read_metrics())


def test_full_fine_tuning_changes_every_layer_and_keeps_the_reference_fixed(tiny_lm: Path, tmp_path: Path) -> None:
    result = dpo.train_dpo(
        config(tiny_lm, tmp_path / "run", lora_r=0, learning_rate=1e-4, max_steps=2), pairs=synthetic_pairs(40)
    )
    state = torch.load(result.run_dir / "checkpoints" / "step-00000002" / "state.pt", weights_only=False)["weights"]
    assert any("mlp" in name for name in state)  # every weight is trained, not an adapter
    assert result.final_metrics["dpo/chosen_reward"] != 0


def test_a_run_directory_in_use_is_refused_and_bad_input_is_named(tiny_lm: Path, tmp_path: Path) -> None:
    dpo.train_dpo(config(tiny_lm, tmp_path / "run", max_steps=1), pairs=synthetic_pairs(20))
    with pytest.raises(AlignloopError, match="--resume"):
        dpo.train_dpo(config(tiny_lm, tmp_path / "run", max_steps=1), pairs=synthetic_pairs(20))
    bad = tmp_path / "pairs.jsonl"
    bad.write_text(json.dumps({"prompt": "p", "chosen": "a"}) + "\n", encoding="utf-8")
    with pytest.raises(AlignloopError, match=r"pairs.jsonl:1.*rejected"):
        dpo.train_dpo(DPOConfig(policy=str(tiny_lm), pairs=str(bad), output=str(tmp_path / "other")))


def test_bf16_trains_under_autocast_over_float32_weights(tiny_lm: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    result = dpo.train_dpo(config(tiny_lm, tmp_path / "run", max_steps=4, dtype="bfloat16"), pairs=synthetic_pairs(24))
    losses = [m["dpo/loss"] for m in RunDir(result.run_dir).read_metrics() if "dpo/loss" in m]
    assert losses and all(math.isfinite(x) for x in losses)
    saved = load_file(str(result.run_dir / "model" / "model.safetensors"))
    assert {t.dtype for t in saved.values()} == {torch.float32}  # the master weights, LoRA merged into them


def test_a_pairs_file_s_ties_are_left_out_of_dpo(tmp_path: Path) -> None:
    """A tie (``Comparison.tied``) has no side to prefer; DPO trains on the ordered pairs only."""
    from alignloop.pairs import write_pairs

    ordered = Comparison("Hi?", "Hello there.", "Go away.")
    path = tmp_path / "pairs.jsonl"
    write_pairs(path, [ordered, Comparison("Hi?", "Hello.", "Hi.", agreement=0.5, tied=True)])
    assert dpo_data.load_pairs(DPOConfig(policy="unused", pairs=str(path))) == [ordered]
    write_pairs(path, [Comparison("Hi?", "Hello.", "Hi.", agreement=0.5, tied=True)])
    with pytest.raises(AlignloopError, match="no pairs to train on"):
        dpo_data.load_pairs(DPOConfig(policy="unused", pairs=str(path)))
