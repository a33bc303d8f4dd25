"""``alignloop demo --personal``: two groups of people with different tastes, one pooled round of the
loop, then one round per group from their feedback on the served model.

Stages, each one API call as in the demo (``alignloop.demo``):

1. **project, generate**: the built-in prompts, K answers each from the starting policy.
2. **label**: seven simulated labelers rank every prompt's answers (overlap 7): three by taste A
   (``judge``), three by taste B (``second_judge``), one misreading taste A (ranking backwards).
3. **consensus** finds the two groups from who agrees with whom and flags only the misreader; each
   group is matched to the taste most of its members rank by.
4. **pooled**: everyone's consensus pairs train one reward model, and RL (GRPO) against it gives the
   pooled policy, as the demo's first round does (the last checkpoint is kept).
5. **usage**: the pooled policy behind ``serve-model`` (the OpenAI-compatible endpoint); the six
   group members sign in with their labeling accounts, ask fresh prompts for two answers each and
   choose one by their taste (``POST /v1/feedback``), which the store keeps as their judgements.
6. **per-group reward model**: each group's pairs — its labels and its feedback — from
   ``export-pairs --by-group``, one score head per group on a shared backbone (``--per-group``).
7. **per-group policies**: RL from the pooled policy against each group's head, one LoRA adapter
   per group (``train-rl --group``).
8. **evaluate --group**, per group, by that group's own judge on held-out prompts: the starting,
   the pooled and the group's policy, the pooled one the baseline of the paired differences.

``demo.json`` holds the table of each group's judge before, pooled and personalised; the report
shows the groups and each group's evaluation.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from alignloop.demo import DemoLoop, DemoResult, console, run_stages
from alignloop.demo_sizes import JUDGE, NOISE, SIZES
from alignloop.errors import AlignloopError
from alignloop.models import POLICY_LORA_TARGETS

SECOND_JUDGE = "alignloop.judges:concise"
TASTES = ("a", "b")  # the account-name prefixes of the two groups' members


@dataclass(frozen=True)
class PersonalSize:
    prompts: int  # prompts every labeler ranks in the first round (the personal demo's own, not the full demo's)
    usage_prompts: int  # fresh prompts each of the six users asks the served model
    group_rl_steps: int  # RL steps of each group's adapter


PERSONAL_SIZES = {
    "full": PersonalSize(prompts=96, usage_prompts=16, group_rl_steps=16),
    "quick": PersonalSize(prompts=32, usage_prompts=6, group_rl_steps=8),
    "tiny": PersonalSize(prompts=12, usage_prompts=2, group_rl_steps=1),
}


@dataclass
class GroupTaste:
    """A labeler group the consensus found, and the taste its members rank by."""

    group: str  # the consensus's name for it ("1", "2")
    taste: str  # "a" or "b"
    judge: str
    members: list[str]
    policy: str = ""  # its adapter, once trained
    evaluation: dict[str, Any] = field(default_factory=dict)


def run_personal_demo(
    directory: str | Path = "demo",
    *,
    size: str = "full",
    judge: str = JUDGE,
    second_judge: str = SECOND_JUDGE,
    overwrite: bool = False,
    host: str = "127.0.0.1",
    port: int = 0,
    seed: int = 0,
) -> DemoResult:
    """Run the personalisation demo in ``directory`` (refused when it holds a project, unless ``overwrite``).

    ``judge`` and ``second_judge`` are the two groups' tastes and each group's gold standard; no
    training ever sees them."""
    from alignloop.judges import load_judge

    if size not in PERSONAL_SIZES:
        raise AlignloopError(f"unknown demo size {size!r} (choose from {', '.join(PERSONAL_SIZES)})")
    if judge == second_judge:
        raise AlignloopError(f"the two groups need different tastes; both are {judge}")
    for spec in (judge, second_judge):
        load_judge(spec)  # a bad judge fails now, not after generation
    result = DemoResult.start(Path(directory), overwrite=overwrite)
    result.facts.update(judge=judge, second_judge=second_judge, seed=seed, size=size, personal=True, rounds=[])
    loop = PersonalLoop(
        Path(directory), size, judges={"a": judge, "b": second_judge}, seed=seed, host=host, port=port, result=result
    )
    run_stages(
        result,
        [
            ("project", loop.create_project),
            ("generate", loop.generate),
            ("label", loop.label),
            ("consensus", loop.consensus),
            ("pairs", loop.pairs),
            ("reward model", loop.reward),
            ("rl (pooled)", loop.rl),
            ("usage", loop.usage),
            ("reward model per group", loop.group_reward),
            ("rl per group", loop.group_rl),
            ("evaluate per group", loop.group_evaluate),
            ("report", loop.report),
        ],
    )
    result.facts["personal"] = loop.table()
    result.save()
    loop.report()
    return result


class PersonalLoop(DemoLoop):
    """The demo's stages with two groups of labelers, and the per-group round after them."""

    def __init__(
        self,
        directory: Path,
        size: str,
        *,
        judges: dict[str, str],
        seed: int,
        host: str,
        port: int,
        result: DemoResult,
    ) -> None:
        # its own first round; the q, v adapters and β its per-group table was measured with (the single-taste
        # demo's all-linear adapters were validated there only)
        sizes = replace(
            SIZES[size], prompts=PERSONAL_SIZES[size].prompts, rl_lora_targets=POLICY_LORA_TARGETS, rl_kl_coef=0.04
        )
        super().__init__(
            directory, sizes, judge=judges["a"], seed=seed, human=False, host=host, port=port, result=result
        )
        self.personal = PERSONAL_SIZES[size]
        self.judges = judges
        self.passwords: dict[str, str] = {}  # account name → password, to sign in as a user later
        self.noises: dict[str, float] = {}  # taste → its labelers' temperature in its judge's units, for its users
        self.groups: list[GroupTaste] = []
        self.grouped_model = ""

    def project_settings(self, config: dict[str, Any]) -> None:
        """Every labeler ranks every prompt, so each two of them share prompts to agree or disagree on."""
        config["labeling"]["overlap"] = 7
        config["labeling"]["criterion"] = "your own taste"

    def label(self) -> None:
        from alignloop import api
        from alignloop.labeling.server import start_server

        server = start_server(self.directory, host=self.host, port=self.port)
        try:
            console.print(f"labeling app: [bold]{server.url}[/]")
            members = [("a", self.judges["a"], 3, 0), ("b", self.judges["b"], 3, 0), ("m", self.judges["a"], 1, 1)]
            for prefix, judge, labelers, misreaders in members:
                sim = api.simulate_labelers(
                    self.directory,
                    judge=judge,
                    labelers=labelers,
                    misreaders=misreaders,
                    noise=NOISE,
                    noise_unit="spread",
                    url=server.url,
                    seed=self.seed,
                    prefix=f"{prefix}{self.seed}",
                )
                self.passwords |= {lab.name: lab.password for lab in sim.labelers}
                self.noises[prefix] = sim.noise
                self.facts.setdefault("label", {})[prefix] = sim.judgements
        finally:
            server.stop()

    def consensus(self) -> None:
        """The consensus, and which group holds which taste (the one most of its members rank by)."""
        super().consensus()
        found = self.consensus_summary["labeler_groups"]
        self.groups = []
        for g in found:
            taste, count = Counter(name[0] for name in g["names"]).most_common(1)[0]
            if taste in TASTES and count * 2 > len(g["names"]):
                self.groups.append(GroupTaste(str(g["group"]), taste, self.judges[taste], g["names"]))
        self.facts["groups"] = [{"group": g.group, "judge": g.judge, "members": g.members} for g in self.groups]
        if sorted(g.taste for g in self.groups) != list(TASTES):
            raise AlignloopError(
                f"the consensus found {len(found)} labeler groups ({[g['names'] for g in found]}), not one per "
                "taste, so there is no group to personalise for: the two judges may rank too much alike"
            )
        for g in self.groups:
            console.print(f"  group {g.group}: {', '.join(g.members)} (by {g.judge})")

    def rl(self) -> None:
        """RL from the starting policy against the pooled reward model; its last checkpoint is the pooled policy."""
        super().rl()
        assert self.rl_run is not None
        self.policy = str(self.rl_run / "model")

    def usage(self) -> None:
        """The pooled policy behind the model server; each group member asks fresh prompts and chooses."""
        from alignloop.project import open_project
        from alignloop.prompts import unsampled_prompts
        from alignloop.serving.server import load_project_sampler, start_model_server
        from alignloop.simulate import SimulatedUser, simulate_users

        users = [(name, g.judge, self.noises[g.taste]) for g in self.groups for name in g.members]
        with open_project(self.directory) as handle:
            prompts = unsampled_prompts(handle, split="train", limit=len(users) * self.personal.usage_prompts)
        per_user = len(prompts) // len(users)
        if per_user == 0:
            raise AlignloopError(f"{self.directory} has no train prompts left for the users to ask")
        simulated = [
            SimulatedUser(name, self.passwords[name], judge, prompts[i * per_user : (i + 1) * per_user], noise)
            for i, (name, judge, noise) in enumerate(users)
        ]
        sampler = load_project_sampler(self.directory, model=self.policy)
        server = start_model_server(self.directory, sampler, name="pooled", host=self.host)
        try:
            console.print(f"model server: [bold]{server.url}[/]")
            seconds = simulate_users(
                server.url,
                "pooled",
                simulated,
                seed=self.seed,
                max_tokens=self.sizes.max_new_tokens,
                temperature=0.9,
            )
        finally:
            server.stop()
        self.facts["usage"] = {
            "users": len(simulated),
            "choices": sum(u.choices for u in simulated),
            "seconds": round(seconds, 1),
        }

    def group_reward(self) -> None:
        """One reward model with a head per group, on each group's labels and feedback."""
        from alignloop import api

        pairs = self.directory / "pairs" / "by-group.jsonl"
        self.facts["group_pairs"] = api.export_pairs(self.directory, pairs, by_group=True)
        run = self._train_reward("reward-per-group", pairs=str(pairs), project=None, per_group=True)
        self.grouped_model = str(run.run_dir)
        self.facts["group_reward"] = {k: v for k, v in run.metrics.items() if k.startswith("rm/eval_accuracy")}

    def group_rl(self) -> None:
        """Each group's LoRA adapter, trained from the pooled policy against its own head."""
        for g in self.groups:
            run = self._train_rl(
                f"rl-group-{g.group}",
                policy=self.policy,
                reward_model=self.grouped_model,
                group=g.group,
                max_steps=self.personal.group_rl_steps,
            )
            g.policy = str(run.run_dir / "model")

    def group_evaluate(self) -> None:
        """Each group's judge on held-out prompts: the pooled policy (the baseline), the start and the group's."""
        from alignloop import api
        from alignloop.eval_sampling import DrawnSamples
        from alignloop.verdict import verdict

        drawn = DrawnSamples()  # the start and the pooled policy answer every group's prompts alike: drawn once
        for g in self.groups:
            evaluation = api.evaluate(
                [self.policy, self.start_policy, g.policy],
                self.grouped_model,
                project=self.directory,
                group=g.group,
                judge=g.judge,
                limit=self.sizes.eval_prompts,
                max_new_tokens=self.sizes.eval_tokens,
                seed=self.seed,
                k=self.sizes.eval_samples,
                output=self.directory / "runs" / f"eval-group-{g.group}",
                progress=True,
                reuse=drawn,
            )
            saved = evaluation.to_json()
            pooled, start, own = saved["models"]
            found = verdict(saved)
            g.evaluation = {
                "verdict": found.sentence if found else "no evaluation to judge",
                "judge_start": start["judge_mean"],
                "judge_pooled": pooled["judge_mean"],
                "judge_personal": own["judge_mean"],
                "personal_minus_pooled_ci": own["judge_diff_ci"],
                "win_rate_over_pooled": own["judge_win_rate"],
                "win_rate_over_pooled_ci": own["judge_win_ci"],
                "kl_personal": own["kl"],
            }
            e = g.evaluation
            console.print(
                f"  group {g.group} by {g.judge}: start {e['judge_start']:+.3f}, pooled {e['judge_pooled']:+.3f}, "
                f"personal {e['judge_personal']:+.3f} (Δ over pooled 95% CI {e['personal_minus_pooled_ci'][0]:+.3f}"
                f"…{e['personal_minus_pooled_ci'][1]:+.3f})"
            )

    def table(self) -> list[dict[str, Any]]:
        """``demo.json``'s table: per group, its judge and its policies' scores by that judge."""
        return [{"group": g.group, "judge": g.judge, "members": g.members, **g.evaluation} for g in self.groups]


def personal_lines(result: DemoResult) -> list[str]:
    """What the CLI prints at the end: the stage times and one line per group."""
    lines = [f"report: {result.report}", "seconds per stage: " + json.dumps(result.stages)]
    for row in result.facts.get("personal", []):
        lines.append(
            f"group {row['group']} ({row['judge']}): start {row['judge_start']:+.3f}, "
            f"pooled {row['judge_pooled']:+.3f}, personalised {row['judge_personal']:+.3f}, over pooled 95% CI "
            f"[{row['personal_minus_pooled_ci'][0]:+.3f}, {row['personal_minus_pooled_ci'][1]:+.3f}]"
        )
    return lines
