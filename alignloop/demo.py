"""``alignloop demo``: the whole loop on the embedded defaults, one stage after another.

project → prompts → generate (K = 4) → label (the labeling server on a free loopback
port; five simulated labelers, one a misreader, ranking by the VADER sentiment judge
through the real HTTP API — or people, with ``--human``) → consensus → pairs →
reward model → PPO with LoRA → evaluation before/after → HTML report.

Each stage is the same API call a user would make by hand; the demo only chooses
sizes that fit the budget (``full`` ≤ 20 min, ``quick`` ≤ 5 min on a 2-core CPU;
``tiny`` uses random 2-layer models and runs in about a minute, for tests) and
records each stage's time in ``demo.json``.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console

from alignloop.errors import AlignloopError

JUDGE = "alignloop.judges:sentiment"
# Plackett–Luce temperature of the simulated labelers. VADER scores of a prompt's four answers
# often differ by only 0.1–0.3, so a larger temperature would drown the criterion in noise.
NOISE = 0.15
console = Console(stderr=True)


@dataclass(frozen=True)
class DemoSize:
    prompts: int  # prompts sampled and labelled (both splits; the test ones become held-out pairs)
    k: int  # completions per prompt
    max_new_tokens: int
    reward_epochs: int
    reward_lr: float  # reward-model learning rate
    ppo_steps: int
    ppo_seconds: float | None  # PPO time budget; it stops at whichever of steps and seconds comes first
    ppo_batch: int  # prompts per PPO step
    learning_rate: float  # PPO (LoRA) learning rate
    eval_prompts: int  # held-out prompts in the before/after evaluation
    eval_tokens: int


SIZES = {
    "full": DemoSize(
        prompts=96,
        k=4,
        max_new_tokens=48,
        reward_epochs=3,
        reward_lr=1e-4,
        ppo_steps=60,
        ppo_seconds=420,
        ppo_batch=8,
        learning_rate=2e-4,
        eval_prompts=40,
        eval_tokens=48,
    ),
    "quick": DemoSize(
        prompts=20,
        k=4,
        max_new_tokens=32,
        reward_epochs=2,
        reward_lr=1e-4,
        ppo_steps=8,
        ppo_seconds=60,
        ppo_batch=4,
        learning_rate=3e-4,
        eval_prompts=12,
        eval_tokens=32,
    ),
    "tiny": DemoSize(
        prompts=12,
        k=4,
        max_new_tokens=8,
        reward_epochs=1,
        reward_lr=1e-4,
        ppo_steps=2,
        ppo_seconds=None,
        ppo_batch=4,
        learning_rate=1e-3,
        eval_prompts=4,
        eval_tokens=8,
    ),
}


@dataclass
class DemoResult:
    project: Path
    report: Path
    stages: dict[str, float] = field(default_factory=dict)  # seconds per stage, in order
    facts: dict[str, Any] = field(default_factory=dict)  # headline numbers of each stage


@contextmanager
def _stage(result: DemoResult, name: str, number: int, total: int) -> Iterator[None]:
    console.rule(f"[bold]{number}/{total} {name}")
    started = time.perf_counter()
    yield
    result.stages[name] = round(time.perf_counter() - started, 1)
    console.print(f"[green]✓[/] {name} ({result.stages[name]:.1f} s)")
    (result.project / "demo.json").write_text(
        json.dumps({"stages": result.stages, "facts": result.facts}, indent=2), encoding="utf-8"
    )


def _tiny_models(directory: Path) -> tuple[str, str]:
    from alignloop.testing import build_tiny_causal_lm, build_tiny_encoder

    return str(build_tiny_causal_lm(directory / "policy")), str(build_tiny_encoder(directory / "encoder"))


def run_demo(
    directory: str | Path = "demo",
    *,
    size: str = "full",
    human: bool = False,
    overwrite: bool = False,
    host: str = "127.0.0.1",
    port: int = 0,
    seed: int = 0,
) -> DemoResult:
    """Run the loop end to end in ``directory`` (refused when it holds a project, unless ``overwrite``)."""
    from alignloop import api
    from alignloop.project import open_project

    if size not in SIZES:
        raise AlignloopError(f"unknown demo size {size!r} (choose from {', '.join(SIZES)})")
    sizes = SIZES[size]
    directory = Path(directory)
    if (directory / "alignloop.yaml").exists():
        if not overwrite:
            raise AlignloopError(f"{directory} already holds a project; pass --overwrite to start it again")
        shutil.rmtree(directory)
    result = DemoResult(project=directory, report=directory / "report.html")
    steps: list[tuple[str, Callable[[], None]]] = []
    state: dict[str, Any] = {}

    def create_project() -> None:
        api.init(directory, name="demo").close()
        config_path = directory / "alignloop.yaml"
        config = yaml.safe_load(config_path.read_text())
        config["split"]["test_fraction"] = 0.25  # enough held-out prompts for the reward model and evaluation
        config["generate"].update(k=sizes.k, max_new_tokens=sizes.max_new_tokens, seed=seed)
        config["labeling"]["criterion"] = "helpfulness and warmth"
        if size == "tiny":
            state["policy"], state["backbone"] = _tiny_models(directory / ".tiny")
        else:
            state["policy"], state["backbone"] = "default", "default"
        config["generate"]["model"] = state["policy"]
        config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        added = api.add_prompts(directory, builtin=True)
        result.facts["prompts"] = {"added": added.added, "test": added.test}

    def generate() -> None:
        out = api.generate(directory, limit=sizes.prompts, progress=True)
        result.facts["generate"] = {"completions": out.generated, "completions_per_s": round(out.completions_per_s, 2)}

    def label() -> None:
        from alignloop.labeling.server import start_server

        server = start_server(directory, host=host, port=port)
        try:
            console.print(f"labeling app: [bold]{server.url}[/]")
            if human:
                _wait_for_people(directory, server.url)
            else:
                sim = api.simulate_labelers(
                    directory, judge=JUDGE, labelers=5, misreaders=1, noise=NOISE, url=server.url, seed=seed
                )
                result.facts["label"] = {
                    "judgements": sim.judgements,
                    "misreaders": [lab.name for lab in sim.labelers if lab.misreader],
                }
        finally:
            server.stop()

    def consensus() -> None:
        report = api.consensus(directory)
        summary = report.summary()
        result.facts["consensus"] = {
            "kendall_w_mean": summary["kendall_w_mean"],
            "krippendorff_alpha": summary["krippendorff_alpha"],
            "pairwise_agreement": summary["pairwise_agreement"],
            "flagged": [lab["name"] for lab in summary["labelers"] if lab["flagged"]],
        }
        for lab in summary["labelers"]:
            mark = "[red]flagged[/]" if lab["flagged"] else ""
            console.print(f"  {lab['name']:<16} tau {lab['tau_shrunk'] or 0:+.2f} {mark}")

    def pairs() -> None:
        result.facts["pairs"] = api.export_pairs(directory, directory / "pairs" / "round-0.jsonl")

    def reward() -> None:
        out = directory / "runs" / "reward-0"
        run = api.train_reward(
            project=directory,
            backbone=state["backbone"],
            output=str(out),
            epochs=sizes.reward_epochs,
            learning_rate=sizes.reward_lr,
            progress=True,
        )
        state["reward_model"] = str(run.run_dir)
        result.facts["reward"] = {
            k: run.metrics.get(k) for k in ("rm/eval_accuracy", "rm/ceiling", "rm/ece", "rm/eval_pairs")
        } | {"pairs_per_s": round(run.pairs_per_s, 1)}

    def ppo() -> None:
        run = api.train_ppo(
            policy=state["policy"],
            reward=state["reward_model"],
            project=str(directory),
            output="runs/ppo-0",
            max_steps=sizes.ppo_steps,
            max_time=sizes.ppo_seconds,
            batch_size=sizes.ppo_batch,
            max_new_tokens=sizes.max_new_tokens,
            learning_rate=sizes.learning_rate,
            merge_lora=True,
            save_every=sizes.ppo_steps,
            seed=seed,
            progress=True,
        )
        state["trained"] = str(run.model_dir)
        result.facts["ppo"] = {"steps": run.steps, "stop_reason": run.stop_reason}

    def evaluate() -> None:
        evaluation = api.evaluate(
            [state["policy"], state["trained"]],
            state["reward_model"],
            project=directory,
            judge=JUDGE,
            limit=sizes.eval_prompts,
            max_new_tokens=sizes.eval_tokens,
            seed=seed,
            output=directory / "runs" / "eval-0",
            progress=True,
        )
        report = evaluation.to_json()
        before, after = report["models"]
        result.facts["evaluate"] = {
            "reward_before": before["reward_mean"],
            "reward_after": after["reward_mean"],
            "judge_before": before["judge_mean"],
            "judge_after": after["judge_mean"],
            "win_rate_rm": after["win_rate"],
            "win_rate_judge": after["judge_win_rate"],
            "kl": after["kl"],
        }
        console.print(
            f"  reward {before['reward_mean']:+.3f} → {after['reward_mean']:+.3f}; "
            f"judge {before['judge_mean']:+.3f} → {after['judge_mean']:+.3f}; KL {after['kl']:.2f} nats"
        )

    def report() -> None:
        handle = open_project(directory)
        try:
            from alignloop.report import build_report

            result.report = build_report(handle)
        finally:
            handle.close()

    steps = [
        ("project", create_project),
        ("generate", generate),
        ("label", label),
        ("consensus", consensus),
        ("pairs", pairs),
        ("reward model", reward),
        ("ppo", ppo),
        ("evaluate", evaluate),
        ("report", report),
    ]
    directory.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    for number, (name, run_stage) in enumerate(steps, start=1):
        with _stage(result, name, number, len(steps)):
            run_stage()
    result.stages["total"] = round(time.perf_counter() - started, 1)
    (directory / "demo.json").write_text(json.dumps({"stages": result.stages, "facts": result.facts}, indent=2))
    report()  # once more, so the report shows the total time
    return result


def _wait_for_people(directory: Path, url: str) -> None:
    """Invite an admin and a labeler, then wait until every sampled prompt has its overlap of judgements."""
    from sqlalchemy import func, select

    from alignloop import api
    from alignloop.project import open_project
    from alignloop.store import Completion, Judgement

    console.print(f"admin invite:   {api.add_labeler(directory, 'admin', admin=True, url=url)}")
    console.print(f"labeler invite: {api.add_labeler(directory, 'labeler-1', url=url)}")
    console.print("Label in the browser; invite more labelers from the admin page. Waiting (Ctrl-C to stop)…")
    handle = open_project(directory)
    try:
        overlap = handle.config.labeling.overlap
        while True:
            with handle.store.session() as s:
                prompts = s.scalar(select(func.count(func.distinct(Completion.prompt_id))))
                done = s.scalar(
                    select(func.count()).select_from(
                        select(Judgement.prompt_id)
                        .where(Judgement.kind != "skip")
                        .group_by(Judgement.prompt_id)
                        .having(func.count(func.distinct(Judgement.labeler_id)) >= overlap)
                        .subquery()
                    )
                )
            console.print(f"\r{done}/{prompts} prompts fully labelled", end="")
            if prompts and done >= prompts:
                console.print()
                return
            time.sleep(5)
    finally:
        handle.close()


def summary_lines(result: DemoResult) -> list[str]:
    """What the CLI prints at the end."""
    lines = [f"report: {result.report}", "seconds per stage: " + json.dumps(result.stages)]
    lines += [f"{k}: {json.dumps(v)}" for k, v in result.facts.items()]
    return lines
