"""Hub ids (``org/name[@revision]``) resolve through the Hugging Face cache, offline, for every model role."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from alignloop.errors import AlignloopError
from alignloop.models import load_policy, resolve_policy, resolve_reward_backbone

POLICY_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
ENCODER_ID = "sentence-transformers/all-MiniLM-L6-v2"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def _cache_model(cache: Path, repo: str, source: Path, commit: str = COMMIT) -> Path:
    """Lay out ``source`` as huggingface_hub does: models--org--name/{snapshots/<commit>/…, refs/main}."""
    root = cache / ("models--" + repo.replace("/", "--"))
    snapshot = root / "snapshots" / commit
    shutil.copytree(source, snapshot)
    (root / "refs").mkdir(parents=True, exist_ok=True)
    (root / "refs" / "main").write_text(commit)
    (root / "blobs").mkdir(exist_ok=True)
    return snapshot


@pytest.fixture
def hub_cache(tmp_path: Path, tiny_lm: Path, tiny_encoder: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "hf-cache"
    _cache_model(cache, POLICY_ID, tiny_lm)
    _cache_model(cache, ENCODER_ID, tiny_encoder)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return cache


def test_hub_id_resolves_to_its_snapshot_in_the_cache_offline(hub_cache: Path) -> None:
    snapshot = hub_cache / "models--HuggingFaceTB--SmolLM2-135M-Instruct" / "snapshots" / COMMIT
    assert Path(resolve_policy(POLICY_ID)) == snapshot
    assert Path(resolve_policy(f"{POLICY_ID}@main")) == snapshot
    assert Path(resolve_policy(f"{POLICY_ID}@{COMMIT}")) == snapshot
    model, tokenizer = load_policy(POLICY_ID)
    assert model.config.hidden_size == 64 and tokenizer.pad_token is not None


def test_reward_backbone_hub_id_loads_as_a_sequence_classifier(hub_cache: Path) -> None:
    from alignloop.reward.model import load_backbone

    path = resolve_reward_backbone(ENCODER_ID)
    model, _ = load_backbone(path)
    assert model.config.num_labels == 1


@pytest.mark.parametrize("name", ["nobody/no-such-model", f"{POLICY_ID}@v9-not-cached"])
def test_missing_hub_id_offline_is_one_line_naming_it_and_the_cache(hub_cache: Path, name: str) -> None:
    with pytest.raises(AlignloopError) as caught:
        resolve_policy(name)
    message = str(caught.value)
    assert name in message and "not in the Hugging Face cache" in message and "\n" not in message


def test_a_path_that_does_not_exist_and_is_no_hub_id_is_refused(tmp_path: Path) -> None:
    with pytest.raises(AlignloopError, match="no such directory"):
        resolve_policy(str(tmp_path / "no" / "such" / "dir"))


def test_a_run_directory_stands_for_its_model(tmp_path: Path, tiny_lm: Path) -> None:
    shutil.copytree(tiny_lm, tmp_path / "run" / "model")
    assert Path(resolve_policy(str(tmp_path / "run"))) == tmp_path / "run" / "model"


def test_generate_from_a_hub_id_on_the_command_line(hub_cache: Path, project_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "p.jsonl").write_text(json.dumps({"prompt": "Say hi."}) + "\n")
    run = [sys.executable, "-m", "alignloop"]
    added = subprocess.run([*run, "prompts", "add", str(tmp_path / "p.jsonl"), "-p", str(project_dir)], text=True,
                           capture_output=True)  # fmt: skip
    assert added.returncode == 0, added.stderr
    result = subprocess.run(
        [*run, "generate", "-p", str(project_dir), "-m", f"{POLICY_ID}@main", "-k", "2", "--max-new-tokens", "4"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert "generated 2 completions" in result.stderr


def test_models_keep_transformers_own_layers_rather_than_fetching_hub_kernels(
    tiny_lm: Path, tiny_encoder: Path
) -> None:
    # transformers >= 5.2x defaults to hub kernels, fetched at run time once a model is on a GPU
    from alignloop.reward.model import load_backbone

    assert load_policy(str(tiny_lm))[0].use_kernels is False
    assert load_backbone(str(tiny_encoder))[0].use_kernels is False


def test_every_stage_reads_lora_from_one_declaration(tiny_lm: Path, tiny_encoder: Path) -> None:
    import torch

    from alignloop.config import LoraSettings
    from alignloop.models import add_lora
    from alignloop.reward.config import RewardConfig
    from alignloop.reward.model import load_backbone
    from alignloop.rl.config import RLConfig
    from alignloop.rl.dpo_config import DPOConfig

    for stage in (RLConfig, DPOConfig, RewardConfig):
        assert issubclass(stage, LoraSettings)
    assert (RLConfig().lora_r, DPOConfig().lora_r, RewardConfig().lora_r) == (16, 16, 0)

    def adapted(model: torch.nn.Module) -> set[str]:
        """The modules that got an adapter (the name before ``.lora_A.``)."""
        return {
            name.split(".lora_A.")[0].rsplit(".", 1)[-1] for name, _ in model.named_parameters() if ".lora_A." in name
        }

    policy, _ = load_policy(str(tiny_lm), dtype="float32")
    wrapped = add_lora(policy, RLConfig(lora_r=4, lora_dropout=0.1))
    assert adapted(wrapped) == {"q_proj", "v_proj"}  # a policy's default
    assert wrapped.peft_config["default"].lora_dropout == 0.1
    policy, _ = load_policy(str(tiny_lm), dtype="float32")
    linear = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    assert adapted(add_lora(policy, RLConfig(lora_r=4, lora_targets=["all-linear"]))) == linear  # not lm_head

    backbone, _ = load_backbone(str(tiny_encoder))
    everywhere = add_lora(backbone, RewardConfig(lora_r=4), default_targets="all-linear", task_type="SEQ_CLS")
    backbone, _ = load_backbone(str(tiny_encoder))
    chosen = add_lora(backbone, RewardConfig(lora_r=4, lora_targets=["query"]), task_type="SEQ_CLS")
    assert adapted(chosen) == {"query"} and {"query", "value", "dense"} <= adapted(everywhere)
