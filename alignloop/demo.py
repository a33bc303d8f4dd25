"""``alignloop demo``: the whole loop on the embedded defaults, one stage after another.

project → prompts → generate (K per prompt) → label (the labeling server on a free loopback
port; five simulated labelers, one a misreader, ranking by a judge — VADER sentiment by
default, any ``MODULE:FUNCTION`` with ``--judge`` — through the real HTTP API, or people with
``--human``) → consensus → pairs → reward model → a held-out reward model from the test
split's labels → GRPO with LoRA (four answers to each prompt, each judged against the others) on
the reward model's score bounded around the labelled answers' (``reward_shaping: par``), a
checkpoint every few steps → the over-optimisation curve and
a checkpoint picked without the judge (where the held-out model peaks, among the checkpoints no
less-KL one beats by the optimised reward model, when it learnt the taste; else the best within a
KL budget) → evaluation of the picked policy against the starting one
(and best-of-N) on held-out prompts → HTML report. With ``rounds`` > 1 the next round
samples fresh prompts (train and a few test ones) from the picked policy, they are labelled, the
reward model retrains on every round's pairs, the held-out one on every round's test-split labels,
and RL continues from the picked policy.

Each stage is the same API call a user would make by hand; the demo only chooses
sizes that fit the budget (``full`` ≤ 20 min, ``quick`` ≤ 5 min on a 2-core CPU;
``tiny`` uses random 2-layer models and runs in about a minute, for tests) and
records each stage's time and headline numbers in ``demo.json``.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from rich.console import Console

from alignloop.demo_sizes import HOLDOUT_MIN_ACCURACY, JUDGE, NOISE, SIZES, DemoSize
from alignloop.errors import AlignloopError

if TYPE_CHECKING:
    from alignloop.reward.train import RewardRunResult
    from alignloop.rl.trainer import RLRunResult

console = Console(stderr=True)


@dataclass
class DemoResult:
    project: Path
    report: Path
    stages: dict[str, float] = field(default_factory=dict)  # seconds per stage, in order
    facts: dict[str, Any] = field(default_factory=dict)  # headline numbers of each stage

    @classmethod
    def start(cls, directory: Path, *, overwrite: bool) -> DemoResult:
        """A result for a demo in ``directory``, which must hold no project unless ``overwrite`` (then emptied)."""
        if (directory / "alignloop.yaml").exists():
            if not overwrite:
                raise AlignloopError(f"{directory} already holds a project; pass --overwrite to start it again")
            shutil.rmtree(directory)
        return cls(project=directory, report=directory / "report.html")

    def save(self) -> None:
        """Write ``demo.json``: the seconds per stage and the facts so far."""
        (self.project / "demo.json").write_text(
            json.dumps({"stages": self.stages, "facts": self.facts}, indent=2), encoding="utf-8"
        )


@contextmanager
def _stage(result: DemoResult, name: str, number: int, total: int) -> Iterator[None]:
    console.rule(f"[bold]{number}/{total} {name}")
    started = time.perf_counter()
    yield
    result.stages[name] = round(time.perf_counter() - started, 1)
    console.print(f"[green]✓[/] {name} ({result.stages[name]:.1f} s)")
    result.save()


def _tiny_models(directory: Path) -> tuple[str, str]:
    from alignloop.testing import build_tiny_causal_lm, build_tiny_encoder

    return str(build_tiny_causal_lm(directory / "policy")), str(build_tiny_encoder(directory / "encoder"))


def run_demo(
    directory: str | Path = "demo",
    *,
    size: str = "full",
    judge: str = JUDGE,
    rounds: int = 1,
    human: bool = False,
    overwrite: bool = False,
    host: str = "127.0.0.1",
    port: int = 0,
    seed: int = 0,
) -> DemoResult:
    """Run the loop end to end in ``directory`` (refused when it holds a project, unless ``overwrite``).

    ``judge`` is the simulated labelers' taste and the evaluation's gold standard; RL never
    sees it. ``seed`` draws the samples, the labelers' noise and the training runs.
    """
    from alignloop.judges import load_judge

    if size not in SIZES:
        raise AlignloopError(f"unknown demo size {size!r} (choose from {', '.join(SIZES)})")
    if rounds < 1:
        raise AlignloopError("--rounds must be at least 1")
    load_judge(judge)  # a bad judge fails now, not after generation
    sizes = SIZES[size]
    directory = Path(directory)
    result = DemoResult.start(directory, overwrite=overwrite)
    result.facts.update(judge=judge, seed=seed, size=size, rounds=[])
    loop = DemoLoop(directory, sizes, judge=judge, seed=seed, human=human, host=host, port=port, result=result)
    steps: list[tuple[str, Callable[[], None]]] = [("project", loop.create_project)]
    for r in range(rounds):
        tag = f" (round {r + 1})" if rounds > 1 else ""
        steps += [
            ("generate" + tag, loop.generate if r == 0 else loop.next_round),
            ("label" + tag, loop.label),
            ("consensus" + tag, loop.consensus),
            ("pairs" + tag, loop.pairs),
            ("reward model" + tag, loop.reward),
            ("held-out reward model" + tag, loop.holdout_reward),
            ("rl" + tag, loop.rl),
            ("curve" + tag, loop.curve),
            ("evaluate" + tag, loop.evaluate),
        ]
    steps.append(("report", loop.report))
    run_stages(result, steps)
    _record_verdict(result)
    if size != "full":
        result.facts["caveat"] = (
            f"the {size} demo labels {sizes.prompts} prompts and evaluates on {sizes.eval_prompts}: it shows the "
            "direction at best, and its intervals are wide; the full demo is the measurement"
        )
    result.save()
    loop.report()  # once more, so the report shows the total time
    return result


def run_stages(result: DemoResult, steps: list[tuple[str, Callable[[], None]]]) -> None:
    """Run ``steps`` in order, timing each into ``result.stages`` (and the sum as ``total``)."""
    result.project.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    for number, (name, run_stage) in enumerate(steps, start=1):
        with _stage(result, name, number, len(steps)):
            run_stage()
    result.stages["total"] = round(time.perf_counter() - started, 1)


class DemoLoop:
    """The demo's stages, each one API call; ``round`` counts the rounds done so far."""

    def __init__(
        self,
        directory: Path,
        sizes: DemoSize,
        *,
        judge: str,
        seed: int,
        human: bool,
        host: str,
        port: int,
        result: DemoResult,
    ) -> None:
        self.directory, self.sizes, self.judge, self.seed = directory, sizes, judge, seed
        self.human, self.host, self.port, self.result = human, host, port, result
        self.round = 0
        self.start_policy = "default"
        self.policy = "default"  # the policy the next RL run starts from
        self.backbone = "default"
        self.reward_model = ""
        self.holdout_model: str | None = None  # trained on the test split's labels; None when it is too unsure
        self.rl_run: Path | None = None
        self.picked: str | None = None
        self.consensus_summary: dict[str, Any] = {}
        self.rl_settings: dict[str, object] = {}  # over every RL run's settings (bench/ppo_variants.py)

    @property
    def facts(self) -> dict[str, Any]:
        """This round's entry of ``demo.json``'s ``rounds``."""
        rounds = self.result.facts["rounds"]
        while len(rounds) <= self.round:
            rounds.append({"round": len(rounds) + 1})
        return rounds[self.round]

    def create_project(self) -> None:
        from alignloop import api

        api.init(self.directory, name="demo").close()
        config_path = self.directory / "alignloop.yaml"
        config = yaml.safe_load(config_path.read_text())
        config["split"]["test_fraction"] = 0.25  # enough held-out prompts for the reward model and evaluation
        config["generate"].update(k=self.sizes.k, max_new_tokens=self.sizes.max_new_tokens, seed=self.seed)
        config["labeling"]["criterion"] = f"the taste of {self.judge}"
        config["labeling"]["allow_ties"] = self.sizes.allow_ties
        config["labeling"]["display_seed"] = self.seed  # the labels, and so the run, repeat with the seed
        self.project_settings(config)
        if self.result.facts["size"] == "tiny":
            self.start_policy, self.backbone = _tiny_models(self.directory / ".tiny")
            self.policy = self.start_policy
        config["generate"]["model"] = self.start_policy
        config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        added = api.add_prompts(self.directory, builtin=True)
        self.result.facts["prompts"] = {"added": added.added, "test": added.test}

    def project_settings(self, config: dict[str, Any]) -> None:
        """Changes a variant of the demo makes to ``alignloop.yaml`` (``config``) before the prompts are added."""

    def generate(self) -> None:
        from alignloop import api

        out = api.generate(self.directory, limit=self.sizes.prompts, progress=True)
        self.facts["generate"] = {"completions": out.generated, "completions_per_s": round(out.completions_per_s, 2)}

    def next_round(self) -> None:
        """Open the next round from the picked policy and sample fresh train prompts from it."""
        from alignloop import api

        self.round += 1
        info, out = api.next_round(
            self.directory,
            policy=self.picked,
            prompts=self.sizes.round_prompts,
            test_prompts=self.sizes.round_test_prompts,
            progress=True,
        )
        self.facts["generate"] = {"completions": out.generated, "policy": info.policy}

    def label(self) -> None:
        from alignloop import api
        from alignloop.labeling.server import start_server

        server = start_server(self.directory, host=self.host, port=self.port)
        try:
            console.print(f"labeling app: [bold]{server.url}[/]")
            if self.human:
                _wait_for_people(self.directory, server.url, invite=self.round == 0)
            else:
                sim = api.simulate_labelers(
                    self.directory,
                    judge=self.judge,
                    labelers=5,
                    misreaders=1,
                    noise=NOISE,
                    noise_unit="spread",
                    url=server.url,
                    seed=self.seed,
                    prefix=f"sim{self.seed}-r{self.round + 1}",
                )
                self.facts["label"] = {
                    "judgements": sim.judgements,
                    "noise": round(sim.noise, 4),
                    "misreaders": [lab.name for lab in sim.labelers if lab.misreader],
                }
        finally:
            server.stop()

    def consensus(self) -> None:
        from alignloop import api

        summary = self.consensus_summary = api.consensus(self.directory).summary()
        self.facts["consensus"] = {
            "kendall_w_mean": summary["kendall_w_mean"],
            "krippendorff_alpha": summary["krippendorff_alpha"],
            "pairwise_agreement": summary["pairwise_agreement"],
            "flagged": [lab["name"] for lab in summary["labelers"] if lab["flagged"]],
        }
        for lab in summary["labelers"]:
            mark = "[red]flagged[/]" if lab["flagged"] else ""
            console.print(f"  {lab['name']:<16} tau {lab['tau_shrunk'] or 0:+.2f} {mark}")

    def pairs(self) -> None:
        from alignloop import api

        self.facts["pairs"] = api.export_pairs(self.directory, self.directory / "pairs" / f"round-{self.round}.jsonl")

    def _train_reward(self, name: str, **settings: object) -> RewardRunResult:
        """A reward model on the project's pairs in ``runs/<name>``, with the demo's sizes; ``settings`` add to them."""
        from alignloop import api

        demo_settings: dict[str, object] = dict(
            project=self.directory,
            backbone=self.backbone,
            output=str(self.directory / "runs" / name),
            epochs=self.sizes.reward_epochs,
            learning_rate=self.sizes.reward_lr,
            pooling=self.sizes.reward_pooling,
            seed=self.seed,
        )
        return api.train_reward(progress=True, **(demo_settings | settings))

    def reward(self) -> None:
        run = self._train_reward(f"reward-{self.round}", ensemble=self.sizes.reward_ensemble)
        self.reward_model = str(run.run_dir)
        keys = ("rm/eval_accuracy", "rm/ceiling", "rm/inter_labeler", "rm/ece", "rm/eval_pairs")
        self.facts["reward"] = {k: run.metrics.get(k) for k in keys} | {"pairs_per_s": round(run.pairs_per_s, 1)}

    def holdout_reward(self) -> None:
        """A reward model of the same taste from labels RL's reward model never saw (the test split's, of every
        round), to pick the checkpoint by; measured on the train split's pairs, and used only if it learnt the taste.

        Retrained each round on the fresh test prompts the round sampled from the kept policy, and not used in a
        round that labelled none: a model of older policies' answers shares the optimised reward model's blind
        spot for what RL learnt since (measured: a second round's held-out model of the first round's answers
        still favoured the first round's hacked answers and kept them, where the judge rose by 0.17 at step 16).
        """
        self.holdout_model = None
        test_pairs = self.facts["pairs"]["test"]
        earlier = self.result.facts["rounds"][self.round - 1]["pairs"]["test"] if self.round else 0
        if test_pairs <= earlier:
            why = "no labelled test-split prompts" + (" this round" if self.round else "")
            self.facts["holdout_reward"] = {"used": False, "why": why}
            return
        run = self._train_reward(f"holdout-reward-{self.round}", train_split="test")
        accuracy = run.metrics.get("rm/eval_accuracy") or 0.0
        used = accuracy >= HOLDOUT_MIN_ACCURACY
        self.holdout_model = str(run.run_dir) if used else None
        self.facts["holdout_reward"] = {"accuracy": accuracy, "used": used}
        console.print(
            f"  held-out reward model: accuracy {accuracy:.3f} on the train split's pairs; "
            + ("it picks the checkpoint" if used else f"below {HOLDOUT_MIN_ACCURACY}, the KL budget picks")
        )

    def _train_rl(self, name: str, **settings: object) -> RLRunResult:
        """An RL run of the project in ``runs/<name>``, GRPO with the demo's sizes; ``settings`` and then
        ``rl_settings`` (which may name another ``algo``) add to them."""
        from alignloop import api

        s = self.sizes
        demo_settings: dict[str, object] = {
            "algo": "grpo",
            "project": str(self.directory),
            "output": str(self.directory / "runs" / name),
            "batch_size": s.rl_prompts,
            "k": s.rl_group,
            "max_new_tokens": s.max_new_tokens,
            "learning_rate": s.learning_rate,
            # the labelers judged answers cut at max_new_tokens; a penalty for not ending would be a taste of our own
            "missing_eos_penalty": 0.0,
            # σ(r − r_ref) around each prompt's labelled answers: the reward stops rising where the reward model
            # extrapolates past them (docs/benchmarks.md, "A bounded reward, PAR")
            "reward_shaping": "par",
            "seed": self.seed,
            "grpo.epochs": 2,
            "grpo.minibatch_size": s.rl_minibatch,
            "grpo.kl_coef": s.rl_kl_coef,
            "lora_targets": list(s.rl_lora_targets),
        }
        return api.train_rl(progress=True, **(demo_settings | settings | self.rl_settings))  # type: ignore[arg-type]

    def rl(self) -> None:
        s = self.sizes
        run = self._train_rl(
            f"rl-{self.round}",
            policy=self.policy,
            reward_model=self.reward_model,
            max_steps=s.rl_steps,
            max_time=s.rl_seconds,
            merge_lora=True,
            save_every=s.save_every,
            keep_checkpoints=0,
        )
        self.rl_run = run.run_dir
        self.facts["rl"] = {"algo": run.algo, "steps": run.steps, "stop_reason": run.stop_reason}

    def curve(self) -> None:
        """Every checkpoint on held-out prompts; the one kept is where the held-out reward model peaks (on the
        reward-versus-KL frontier, ``overoptimisation.undominated``), or the best within the KL budget when there
        is none, never by the judge."""
        from alignloop import api
        from alignloop.overoptimisation import kept_step

        assert self.rl_run is not None
        curve = api.curve(
            self.rl_run,
            self.reward_model,
            project=self.directory,
            judge=self.judge,
            kl_budget=self.sizes.kl_budget,
            holdout_reward_model=self.holdout_model,
            limit=self.sizes.curve_prompts,
            k=self.sizes.curve_samples,
            max_new_tokens=self.sizes.eval_tokens,
            seed=self.seed,
            keep=self.rl_run / "kept",
            progress=True,
        )
        self.picked = curve.kept
        self.policy = self.picked
        step = kept_step(curve.picks)
        self.facts["curve"] = {
            "points": [
                {
                    "step": p.step,
                    "kl": p.kl,
                    "reward": p.reward_mean,
                    "holdout_reward": p.holdout_reward_mean,
                    "judge": p.judge_mean,
                }
                for p in curve.points
            ],
            "picks": curve.picks,
            "picked_step": step,
            "judge_peak_step": curve.judge_peak,
        }
        by = "the held-out reward model" if self.holdout_model else f"the KL budget of {self.sizes.kl_budget} nats"
        console.print(f"  picked step {step} by {by}; the judge peaked at step {curve.judge_peak}")

    def evaluate(self) -> None:
        from alignloop import api

        assert self.picked is not None
        evaluation = api.evaluate(
            [self.start_policy, self.picked],
            self.reward_model,
            project=self.directory,
            judge=self.judge,
            limit=self.sizes.eval_prompts,
            max_new_tokens=self.sizes.eval_tokens,
            seed=self.seed,
            k=self.sizes.eval_samples,
            best_of=self.sizes.best_of,
            output=self.directory / "runs" / f"eval-{self.round}",
            progress=True,
        )
        before, after, best_of = evaluation.to_json()["models"]
        self.facts["evaluate"] = {
            "reward_before": before["reward_mean"],
            "reward_after": after["reward_mean"],
            "judge_before": before["judge_mean"],
            "judge_after": after["judge_mean"],
            "judge_diff": after["judge_diff"],
            "judge_diff_ci": after["judge_diff_ci"],
            "win_rate_rm": after["win_rate"],
            "win_rate_judge": after["judge_win_rate"],
            "win_rate_judge_ci": after["judge_win_ci"],
            "kl": after["kl"],
            "best_of_n": {
                "n": best_of["best_of"],
                "judge": best_of["judge_mean"],
                "judge_diff_ci": best_of["judge_diff_ci"],
                "kl": best_of["kl"],
            },
        }
        console.print(
            f"  reward {before['reward_mean']:+.3f} → {after['reward_mean']:+.3f}; "
            f"judge {before['judge_mean']:+.3f} → {after['judge_mean']:+.3f} "
            f"(paired Δ 95% CI {after['judge_diff_ci'][0]:+.3f}…{after['judge_diff_ci'][1]:+.3f}); "
            f"KL {after['kl']:.2f} nats; best-of-{best_of['best_of']} judge {best_of['judge_mean']:+.3f}"
        )

    def report(self) -> None:
        from alignloop.project import open_project
        from alignloop.report import build_report

        handle = open_project(self.directory)
        try:
            self.result.report = build_report(handle)
        finally:
            handle.close()


def _record_verdict(result: DemoResult) -> None:
    """The report's sentence on the last round's evaluation (better, worse or no detectable change) and its
    warnings, into the facts the CLI prints."""
    from alignloop.verdict import accuracy_and_ceiling, verdict

    rounds = result.facts["rounds"]
    path = result.project / "runs" / f"eval-{len(rounds) - 1}" / "evaluation.json"
    found = None
    if rounds and path.exists():
        accuracy, ceiling = accuracy_and_ceiling(rounds[-1].get("reward", {}))
        found = verdict(json.loads(path.read_text()), rm_accuracy=accuracy, rm_ceiling=ceiling)
    result.facts["verdict"] = found.sentence if found else "no evaluation to judge"
    if found and found.warnings:
        result.facts["warnings"] = found.warnings


def _wait_for_people(directory: Path, url: str, *, invite: bool) -> None:
    """Invite an admin and a labeler (first round), then wait until every prompt has its overlap of judgements."""
    from sqlalchemy import func, select

    from alignloop import api
    from alignloop.project import open_project
    from alignloop.store import Completion, Judgement

    if invite:
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
