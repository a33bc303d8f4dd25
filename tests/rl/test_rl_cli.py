"""The train-rl and train-ppo commands: flags and --set reach the config, errors are one line."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from alignloop.cli import app

REWARD = f"{Path(__file__).parent / 'rewards_for_tests.py'}:space_fraction"


def test_train_ppo_runs_with_flags_and_set_overrides(tiny_lm: Path, prompts_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = CliRunner().invoke(
        app,
        ["train-ppo", "--policy", str(tiny_lm), "--reward-model", REWARD, "--prompts", str(prompts_file),
         "--output", str(out), "--max-steps", "1", "--batch-size", "2", "--max-new-tokens", "4",
         "--set", "ppo.clip=0.1", "--set", "ppo.target_kl=null"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["algo"] == "ppo" and saved["max_steps"] == 1 and saved["batch_size"] == 2
    assert saved["ppo"]["clip"] == 0.1 and saved["ppo"]["target_kl"] is None
    assert (out / "model").is_dir()


def test_train_rl_resume_keeps_the_saved_config_and_extends_the_run(
    tiny_lm: Path, prompts_file: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    common = ["--output", str(out)]
    first = CliRunner().invoke(
        app,
        ["train-rl", "--algo", "rloo", "--policy", str(tiny_lm), "--reward-model", REWARD, "--prompts",
         str(prompts_file), "-k", "2", "--batch-size", "2", "--max-new-tokens", "4", "--max-steps", "1", *common],
    )  # fmt: skip
    assert first.exit_code == 0, first.output
    second = CliRunner().invoke(app, ["train-rl", "--algo", "rloo", "--resume", "--max-steps", "2", *common])
    assert second.exit_code == 0, second.output
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 2
    assert yaml.safe_load((out / "config.yaml").read_text())["k"] == 2


def test_train_rl_without_algo_runs_the_algorithm_its_config_file_names(
    tiny_lm: Path, prompts_file: Path, tmp_path: Path
) -> None:
    """A config file saying `algo: rloo` is not overridden by the flag's default, and --kl-coef sets rloo's β."""
    config = tmp_path / "rl.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "algo": "rloo",
                "policy": str(tiny_lm),
                "reward_model": REWARD,
                "prompts": str(prompts_file),
                "k": 2,
                "batch_size": 2,
                "max_new_tokens": 4,
                "max_steps": 1,
                "output": str(tmp_path / "run"),
            }
        )  # fmt: skip
    )
    result = CliRunner().invoke(app, ["train-rl", "--config", str(config), "--kl-coef", "0.07"])
    assert result.exit_code == 0, result.output
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert saved["algo"] == "rloo" and saved["rloo"]["kl_coef"] == 0.07
    assert "rloo stopped" in result.output
    ppo = CliRunner().invoke(app, ["train-ppo", "--config", str(config), "--output", str(tmp_path / "ppo")])
    assert ppo.exit_code == 0, ppo.output
    assert yaml.safe_load((tmp_path / "ppo" / "config.yaml").read_text())["algo"] == "ppo"


def test_unknown_config_key_is_refused_naming_the_key(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["train-rl", "--set", "ppo.clipp=0.1", "--reward-model", REWARD, "--prompts", "x.jsonl"]
    )
    assert result.exit_code != 0
    assert "ppo.clipp" in str(result.exception)


def test_old_spellings_still_work_with_a_warning(tiny_lm: Path, prompts_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    with pytest.warns(FutureWarning, match="samples_per_prompt is now called k"):
        result = CliRunner().invoke(
            app,
            ["train-rl", "--algo", "grpo", "--policy", str(tiny_lm), "--reward", REWARD, "--prompts", str(prompts_file),
             "--samples-per-prompt", "2", "--batch-size", "2", "--max-new-tokens", "4", "--max-steps", "1",
             "--output", str(out)],
        )  # fmt: skip
    assert result.exit_code == 0, result.output
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["k"] == 2 and saved["reward_model"] == REWARD


def test_kl_coef_sets_the_chosen_algorithms_beta(tiny_lm: Path, prompts_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = CliRunner().invoke(
        app,
        ["train-rl", "--algo", "rloo", "--policy", str(tiny_lm), "--reward-model", REWARD, "--prompts",
         str(prompts_file), "-k", "2", "--batch-size", "2", "--max-new-tokens", "4", "--max-steps", "1",
         "--kl-coef", "0.2", "--output", str(out)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert yaml.safe_load((out / "config.yaml").read_text())["rloo"]["kl_coef"] == 0.2
