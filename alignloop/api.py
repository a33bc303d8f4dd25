"""The Python API: one function per CLI command, same names and arguments.

    from alignloop import api
    api.init("myproj")
    api.add_prompts("myproj", builtin=True)
    api.generate("myproj", k=4)

Each function opens the project, delegates to its stage and returns; stages are imported
lazily, so ``import alignloop.api`` stays cheap. What a stage produced is noted on the
project's round through ``alignloop.rounds``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from alignloop.project import ProjectHandle, init_project, open_project
from alignloop.runs import require_reward_run

if TYPE_CHECKING:
    from alignloop.bridges.store import ImportResult as JudgementsImportResult
    from alignloop.consensus.report import ConsensusReport
    from alignloop.eval_human import HumanEvalResult
    from alignloop.eval_sampling import DrawnSamples
    from alignloop.evaluate import EvalReport
    from alignloop.generate import GenerateResult
    from alignloop.labeling.server import ServeConfig
    from alignloop.overoptimisation import Curve
    from alignloop.pairs import ImportResult as PairsImportResult
    from alignloop.prompts import AddResult
    from alignloop.reward import RewardRunResult
    from alignloop.reward.prioritize import PrioritizeResult
    from alignloop.rl.config import RLConfig
    from alignloop.rl.dpo import DPORunResult
    from alignloop.rl.trainer import RLRunResult
    from alignloop.rounds import RoundInfo
    from alignloop.serving.config import ServeModelConfig
    from alignloop.simulate import SimulationResult


def init(
    directory: str | Path, *, name: str | None = None, database: str | None = None, task_type: str | None = None
) -> ProjectHandle:
    """Create a project directory with ``alignloop.yaml`` and a migrated store (``task_type``: its labeling task)."""
    return init_project(directory, name=name, database=database, task_type=task_type)


def add_prompts(project: str | Path, file: str | Path | None = None, **settings: object) -> AddResult:
    """Import prompts from a file, a ``datasets`` directory or hub id, or the built-in set, into the project;
    all or nothing. ``settings``: the keys of ``AddPromptsConfig`` (``builtin``, ``column``, and ``split``/``subset``,
    which choose what is read of a dataset)."""
    from alignloop.config import AddPromptsConfig, settings_from
    from alignloop.prompts import add_prompts as store_prompts
    from alignloop.prompts import builtin_prompts_path, read_prompt_file

    config = settings_from(AddPromptsConfig, settings)
    source = builtin_prompts_path() if config.builtin else file
    rows = read_prompt_file(source, config.column, split=config.split, subset=config.subset)  # type: ignore[arg-type]
    with open_project(project) as handle:
        label = "builtin" if config.builtin else str(source) + (f"[{config.split}]" if config.split else "")
        return store_prompts(handle, rows, label)


def list_prompts(project: str | Path, **settings: object) -> list[dict]:
    """The project's prompts (id, split, text), oldest first. ``settings``: the keys of ``ListPromptsConfig``
    (``split``, ``limit``)."""
    from alignloop.config import ListPromptsConfig, settings_from
    from alignloop.prompts import list_prompts as listing

    config = settings_from(ListPromptsConfig, settings)
    with open_project(project) as handle:
        return listing(handle, split=config.split, limit=config.limit)


def generate(
    project: str | Path, *, fresh_only: bool = False, progress: bool = False, **settings: object
) -> GenerateResult:
    """Sample completions for the current round from its policy (or ``model=``).

    ``settings``: the keys of ``PromptSelection`` (``split``, ``limit``: which prompts), and of
    ``GenerateConfig``, which replace the ``generate:`` keys of alignloop.yaml; ``fresh_only`` skips
    prompts that were sampled in another round.
    """
    from alignloop.config import PromptSelection, own_settings
    from alignloop.generate import generate_completions, project_generate_config

    chosen, overrides = own_settings(PromptSelection, settings)
    with open_project(project) as handle:
        config = project_generate_config(handle, overrides)
        return generate_completions(
            handle, config, split=chosen.split, limit=chosen.limit, fresh_only=fresh_only, progress=progress
        )


def train_dpo(
    pairs: str | Path | None = None,
    *,
    project: str | Path | None = None,
    config: str | Path | None = None,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = False,
    **settings: object,
) -> DPORunResult:
    """DPO on a pairs file or a project's pairs. ``config`` is a YAML file of ``DPOConfig`` keys;
    ``settings`` (any of those keys, e.g. ``policy=``, ``beta=``, dotted or not) replace its values.
    ``resume`` continues the run in ``output`` (default: the project's newest DPO run) from its
    latest checkpoint, with the config saved there unless another is given."""
    from alignloop.rl.dpo import train_dpo as run_dpo
    from alignloop.rl.dpo_config import DPOConfig
    from alignloop.runs import resolve_run_config

    given = {"pairs": pairs, "project": project, **settings}
    resolved = resolve_run_config(DPOConfig, config, given, stage="dpo", resume=resume)
    return run_dpo(resolved, resume=resume, overwrite=overwrite, progress=progress)


def train_reward(
    pairs: str | Path | None = None,
    *,
    project: str | Path | None = None,
    config: str | Path | None = None,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = False,
    **settings: object,
) -> RewardRunResult:
    """Train a reward model on a pairs file or a project's consensus pairs. ``config`` is a YAML
    file of ``RewardConfig`` keys; ``settings`` (any of those keys, e.g. ``backbone=``, ``epochs=``, ``ensemble=``)
    replace its values. ``resume`` continues the run in ``output`` (default: the project's newest
    reward run) from its latest checkpoint, with the config saved there unless another is given."""
    from alignloop.reward import RewardConfig
    from alignloop.reward import train_reward as run_reward
    from alignloop.runs import resolve_run_config

    given = {"pairs": pairs, "project": project, **settings}
    resolved = resolve_run_config(RewardConfig, config, given, stage="reward", resume=resume)
    return run_reward(resolved, progress=progress, resume=resume, overwrite=overwrite)


def score(
    reward_model: str | Path, input: str | Path, output: str | Path | None = None, **settings: object
) -> list[dict]:
    """Score a JSONL file with a trained reward model: ``reward`` per prompt/completion row;
    ``reward_chosen``, ``reward_rejected`` and ``p_chosen`` per chosen/rejected row. Writes
    ``output`` (atomically) when given; returns the scored rows. ``settings``: the other keys of
    ``ScoreConfig`` (``batch_size``, ``group`` for a per-group model)."""
    from alignloop.config import settings_from
    from alignloop.reward.config import ScoreConfig
    from alignloop.reward.model import score_file

    given = {"reward_model": reward_model, "input": input, "output": output, **settings}
    config = settings_from(ScoreConfig, given)
    require_reward_run(config.reward_model, "--reward-model")
    return score_file(
        config.reward_model, config.input, batch_size=config.batch_size, group=config.group, output=config.output
    )


def prioritize(
    project: str | Path, reward_model: str | Path | list[str | Path], **settings: object
) -> PrioritizeResult:
    """Active labeling: store, for every prompt of the round (default: the newest training round) that
    still needs labels, how unsure ``reward_model`` is about its completions' order (several runs are
    an ensemble); the labeling app offers the highest first under ``labeling.assignment: uncertainty``.
    ``settings``: the other keys of ``PrioritizeConfig`` (``round_index``, ``top``, ``batch_size``)."""
    from alignloop.config import settings_from
    from alignloop.reward.config import PrioritizeConfig
    from alignloop.reward.prioritize import prioritize_prompts

    config = settings_from(PrioritizeConfig, {"reward_model": reward_model, **settings})
    for run in config.reward_model:
        require_reward_run(run, "--reward-model")
    with open_project(project) as handle:
        return prioritize_prompts(
            handle, config.reward_model, round_index=config.round_index, top=config.top, batch_size=config.batch_size
        )


def serve(
    project: str | Path = ".", *, on_ready: Callable[[ServeConfig], None] | None = None, **settings: object
) -> None:
    """Run the labeling web app for ``project`` until interrupted (blocks). ``settings``: the keys of
    ``ServeConfig`` (``host``, ``port``, ``workers``, ``root_path``: the prefix a reverse proxy serves the
    app under and strips before passing requests on).

    The settings, the port and the project are checked first; ``on_ready(config)`` is called once they pass.
    """
    from alignloop.config import settings_from
    from alignloop.labeling.server import ServeConfig, check_port
    from alignloop.labeling.server import serve as run_server

    config = settings_from(ServeConfig, settings)
    check_port(config.host, config.port)
    open_project(project).close()  # a missing project or a bad config is refused before anything is printed
    if on_ready is not None:
        on_ready(config)
    run_server(project, host=config.host, port=config.port, workers=config.workers, root_path=config.root_path)


def serve_model(
    project: str | Path = ".",
    *,
    on_ready: Callable[[ServeModelConfig, str, str, list[str]], None] | None = None,
    **settings: object,
) -> None:
    """Serve the project's current policy (or ``model``) behind an OpenAI-compatible chat-completions API,
    with feedback stored as its users' judgements, until interrupted (blocks). ``settings``: the keys of
    ``ServeModelConfig`` (``model``, ``served_model_name``, ``groups``, ``backend``, ``dtype``, ``device``,
    ``host``, ``port``).

    With ``groups`` and no ``model``, each labeler group's newest policy (``train-rl --group``) is served
    beside it as ``<name>:group-<group>``, and a user the consensus put in such a group is answered by it.
    ``on_ready(config, name, version, group model names)`` is called once the models are loaded and the port
    is known to be free.
    """
    from alignloop.config import settings_from
    from alignloop.labeling.server import check_port
    from alignloop.serving.app import group_model_name
    from alignloop.serving.config import ServeModelConfig
    from alignloop.serving.server import load_group_samplers, load_project_sampler
    from alignloop.serving.server import serve_model as run_server

    config = settings_from(ServeModelConfig, settings)
    check_port(config.host, config.port)
    backend, dtype, device = config.backend, config.dtype, config.device
    sampler = load_project_sampler(project, model=config.model, backend=backend, dtype=dtype, device=device)
    group_samplers = (
        load_group_samplers(project, main=sampler, backend=backend, dtype=dtype, device=device)
        if config.groups and config.model is None
        else {}
    )
    name = config.served_model_name or sampler.version
    run_server(
        project,
        sampler,
        name=name,
        groups=group_samplers,
        host=config.host,
        port=config.port,
        on_ready=None
        if on_ready is None
        else lambda: on_ready(config, name, sampler.version, [group_model_name(name, g) for g in group_samplers]),
    )


def add_labeler(project: str | Path, name: str, **settings: object) -> str:
    """Create a labeling account; returns its one-time invite link (on the app at ``url``). ``settings``: the keys
    of ``AddLabelerConfig`` (``admin``, ``url``)."""
    from alignloop.config import settings_from
    from alignloop.labeling.accounts import add_labeler as create
    from alignloop.labeling.accounts import invite_url
    from alignloop.labeling.config import AddLabelerConfig

    config = settings_from(AddLabelerConfig, settings)
    with open_project(project) as handle:
        token = create(handle.store, name, admin=config.admin, invite_days=handle.config.labeling.invite_days)
        return invite_url(config.url, token)


def list_labelers(project: str | Path = ".") -> list:
    """Every labeling account (``LabelerInfo``: name, role, status, invite state, read_guidelines_version)."""
    from alignloop.labeling.accounts import list_labelers as listing

    with open_project(project) as handle:
        return listing(handle.store)


def deactivate_labeler(project: str | Path, name: str) -> None:
    """Lock a labeling account out; its judgements are kept."""
    from alignloop.labeling.accounts import deactivate_labeler as deactivate

    with open_project(project) as handle:
        deactivate(handle.store, name)


def consensus(project: str | Path = ".", **settings: object) -> ConsensusReport:
    """Aggregate the project's judgements; write ``summary.json``, ``prompts.jsonl`` and
    ``labelers.png`` into ``out`` (default ``<project>/consensus``) and return the report.
    ``settings``: the keys of ``ConsensusConfig`` (``round_index``, ``method``, ``weighting``,
    ``include_flagged``, ``out``)."""
    from alignloop.config import settings_from
    from alignloop.consensus.config import ConsensusConfig
    from alignloop.consensus.report import run_consensus

    config = settings_from(ConsensusConfig, settings)
    with open_project(project) as handle:
        return run_consensus(handle, config)


def export_pairs(project: str | Path, out: str | Path, **settings: object) -> dict:
    """Write the project's comparisons (plus imported pairs) as JSONL. ``settings``: the keys of
    ``ExportPairsConfig`` (``fmt``, ``chat``, ``source``, ``include_flagged``, ``min_agreement``,
    ``rounds``, ``split``, ``unpaired``, ``by_group``).

    ``split`` keeps only ``train`` or ``test`` pairs; ``unpaired`` also writes KTO-style
    labelled examples from thumbs tasks to that path; ``by_group`` writes each labeler group's
    own pairs, with its name in ``group`` (no imported pairs). Returns the counts written.
    """
    from alignloop.config import settings_from
    from alignloop.pairs.config import ExportPairsConfig
    from alignloop.pairs.export import export_project_pairs

    config = settings_from(ExportPairsConfig, settings)
    with open_project(project) as handle:
        return export_project_pairs(handle, out, config)


def import_pairs(project: str | Path, file: str | Path, **settings: object) -> PairsImportResult:
    """Validate a pairs file, ``datasets`` directory or hub dataset id (a format of ``pairs.FORMATS``,
    or UltraFeedback-binarized rows, read as trl; detected when ``fmt`` is None) and add it to the project, so
    ``export_pairs`` and reward training include it. ``settings``: the keys of ``ImportPairsConfig`` (``fmt``,
    and ``split``/``subset``, which choose what is read of a dataset)."""
    from alignloop.config import settings_from
    from alignloop.pairs import import_pairs as _import
    from alignloop.pairs.config import ImportPairsConfig

    config = settings_from(ImportPairsConfig, settings)
    with open_project(project) as handle:
        return _import(handle, file, config.fmt, split=config.split, subset=config.subset)


def export_judgements(project: str | Path, out: str | Path, **settings: object) -> int:
    """Write every raw judgement (corrections, skips and all) as JSONL; returns the count. ``settings``: the
    keys of ``ExportJudgementsConfig`` (``round_index``, ``texts``)."""
    from alignloop.config import settings_from
    from alignloop.labeling.config import ExportJudgementsConfig
    from alignloop.labeling.exports import export_judgements as _export

    config = settings_from(ExportJudgementsConfig, settings)
    with open_project(project) as handle:
        return _export(handle, out, round_index=config.round_index, texts=config.texts)


def import_judgements(project: str | Path, file: str | Path, **settings: object) -> JudgementsImportResult:
    """Import rankings made in Label Studio (``fmt="label-studio"``) or Argilla (``"argilla"``): labelers,
    prompts, completions, assignments and judgements, in one transaction; a file imported again adds nothing.
    ``settings``: the keys of ``ImportJudgementsConfig`` (``fmt``; ``prompt_key`` and ``answers_key``, where the
    task data holds the prompt and the answers; ``question``)."""
    from alignloop.bridges.config import ImportJudgementsConfig
    from alignloop.bridges.store import import_judgements as _import
    from alignloop.bridges.tasks import TaskKeys
    from alignloop.config import settings_from

    config = settings_from(ImportJudgementsConfig, settings)
    keys = TaskKeys(config.prompt_key, config.answers_key or None, config.question)
    with open_project(project) as handle:
        return _import(handle, file, config.fmt, keys)


def export_tasks(project: str | Path, out: str | Path, **settings: object) -> int:
    """Write the current round's open prompts and their completions as Label Studio tasks or Argilla
    records (atomically); ``import_judgements`` reads them back once annotated. Returns the task count.
    ``settings``: the other keys of ``ExportTasksConfig`` (``fmt``, ``prompt_key``, ``answers_key``)."""
    from alignloop.bridges.config import ExportTasksConfig
    from alignloop.bridges.store import export_tasks as _export
    from alignloop.bridges.tasks import TaskKeys
    from alignloop.config import settings_from

    config = settings_from(ExportTasksConfig, {"out": out, **settings})
    with open_project(project) as handle:
        return _export(handle, config.out, config.fmt, TaskKeys(config.prompt_key, config.answers_key or None))


def simulate_labelers(
    project: str | Path | None = ".", *, admin_password: str | None = None, **settings: object
) -> SimulationResult:
    """Simulated labelers: real accounts ranking by ``judge`` plus Plackett–Luce noise, through the HTTP API.

    ``settings`` are the keys of ``alignloop.simulate.SimulateConfig`` (``judge``, ``labelers``,
    ``noise``, ...). Accounts are created in ``project``'s store, or with ``admin`` (and
    ``admin_password``) through the admin API of the server at ``url`` (then ``project`` may be None).
    """
    from alignloop.simulate import simulate_labelers as _simulate

    return _simulate(project, admin_password=admin_password, **settings)


def next_round(
    project: str | Path = ".", *, progress: bool = False, **settings: object
) -> tuple[RoundInfo, GenerateResult]:
    """Open the next round from the newest trained policy and sample it on fresh prompts.

    ``settings``: the keys of ``NextRoundConfig`` (``policy``, ``prompts``, ``test_prompts``), and of
    ``GenerateConfig``, which replace ``generate:`` keys, as in ``generate``. Returns ``(RoundInfo,
    GenerateResult)``, the result counting both splits; ``prompts`` caps how many fresh train prompts are
    sampled. ``test_prompts`` fresh test-split prompts are sampled too, so that a held-out reward model
    (``train_split: test``) retrained after labelling knows the new policy's answers: one trained only on an
    older policy's answers shares the optimised model's blind spots for what RL has since learnt. Both splits
    sample with one loaded model.
    """
    from alignloop.config import NextRoundConfig, own_settings
    from alignloop.generate import generate_fresh, project_generate_config
    from alignloop.rounds import next_round as open_next

    wanted, overrides = own_settings(NextRoundConfig, settings)
    with open_project(project) as handle:
        info = open_next(handle, policy=wanted.policy)
        config = project_generate_config(handle, overrides)
        result = generate_fresh(handle, config, train=wanted.prompts, test=wanted.test_prompts, progress=progress)
    return info, result


def list_rounds(project: str | Path = ".") -> list:
    """Every round of the project (``RoundInfo``: index, kind, policy, reward model, dataset, metrics)."""
    from alignloop.rounds import list_rounds as listing

    with open_project(project) as handle:
        return listing(handle)


def evaluate(
    models: list[str] | None = None,
    reward_model: str | Path | None = None,
    *,
    progress: bool = False,
    reuse: DrawnSamples | None = None,
    **settings: object,
) -> EvalReport:
    """Compare ``models`` on held-out prompts (the project's test split, or a prompts file).
    ``settings``: the other keys of ``EvaluateConfig`` (``project`` or ``prompts``, ``judge``, ``k``,
    ``best_of``, ``group``, ...).

    ``k`` completions per prompt and model (a prompt's score is their mean); ``best_of`` N adds
    the best-of-N row of the first model, the baseline that needs no training. ``group`` scores as
    that labeler group judges (a per-group reward model's head); without ``models`` it compares
    the project's pooled policy with the group's newest (``train_rl(group=)``).
    ``reuse`` (an ``eval_sampling.DrawnSamples``, kept by the caller across evaluations of the same prompts
    and settings) lends its completions and KLs of models named again, and keeps this evaluation's.

    Writes ``evaluation.json`` into ``output`` (default ``<project>/runs/eval-<n>``) and, for a
    project, records it on the current round (under the group's entry for a group) so the report shows it.
    """
    from alignloop.config import settings_from
    from alignloop.eval_config import EvaluateConfig
    from alignloop.evaluate import run_evaluation

    given = {"models": models, "reward_model": reward_model}
    config = settings_from(EvaluateConfig, {**{k: v for k, v in given.items() if v is not None}, **settings})
    return run_evaluation(config, progress=progress, reuse=reuse)


def curve(run_dir: str | Path, reward_model: str | Path, *, progress: bool = False, **settings: object) -> Curve:
    """The over-optimisation curve of the RL run ``run_dir``: every checkpoint on held-out prompts.
    ``settings``: the other keys of ``CurveConfig`` (``project`` or ``prompts``, ``judge``, ``kl_budget``,
    ``holdout_reward_model``, ``k``, ``keep``, ...).

    Writes ``curve.json`` and ``overoptimisation.png`` into ``output`` (default
    ``<run_dir>/curve``) and, for a project, records the curve on the current round so the
    report shows it. The checkpoint picks use ``kl_budget`` and ``holdout_reward_model``, never the judge.
    ``keep`` saves the picked checkpoint (by the held-out reward model when given, else the KL
    budget; the base policy when nothing qualifies) there as a plain model and records it as the
    round's trained policy, the one ``round next`` samples from.
    """
    from alignloop.config import settings_from
    from alignloop.overoptimisation import CurveConfig, run_curve

    config = settings_from(CurveConfig, {"reward_model": reward_model, **settings})
    return run_curve(run_dir, config, progress=progress)


def eval_human(project: str | Path, models: list[str], **settings: object) -> tuple[int, int]:
    """Create a blind pairwise evaluation of two models in the labeling app; returns (round, prompts).
    ``settings``: the other keys of ``EvalHumanConfig`` (``prompts``, ``max_new_tokens``, ``seed``)."""
    from alignloop.config import settings_from
    from alignloop.eval_human import EvalHumanConfig, create_human_eval

    config = settings_from(EvalHumanConfig, {"models": models, **settings})
    model_a, model_b = config.models
    with open_project(project) as handle:
        return create_human_eval(
            handle, model_a, model_b, prompts=config.prompts, max_new_tokens=config.max_new_tokens, seed=config.seed
        )


def eval_human_result(project: str | Path, *, round_index: int | None = None) -> HumanEvalResult:
    """The human win rate of the second model over the first in a blind evaluation round."""
    from alignloop.eval_human import human_eval_result

    with open_project(project) as handle:
        return human_eval_result(handle, round_index)


def report(project: str | Path = ".", *, out: str | Path | None = None) -> Path:
    """Rebuild the project's self-contained HTML report; returns its path."""
    from alignloop.report import build_report

    with open_project(project) as handle:
        return build_report(handle, out)


def train_rl(
    algo: str | None = None,
    *,
    config: str | Path | None = None,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = False,
    **settings: object,
) -> RLRunResult:
    """RL fine-tuning of a policy against a reward with ``algo``, a name in ``rl.config.ALGORITHMS``; without
    one, the algorithm ``config`` names (or the resumed run's), else ppo.
    ``config`` is a YAML file of ``RLConfig`` keys; ``settings`` (``policy=``, ``reward_model=``, ``prompts=``,
    ``project=``, or dotted keys such as ``**{"ppo.clip": 0.1}``) replace its values. ``resume``
    continues the run in ``output`` (default: the project's newest run of ``algo``) from its latest
    checkpoint, with the config saved there. ``group=`` trains one labeler group's policy against its
    head of a per-group reward model (``evaluate(None, rm, project=, group=)`` compares it with the pooled one)."""
    from alignloop.rl.trainer import train_rl as run_rl

    resolved = rl_config(algo, config=config, resume=resume, **settings)
    return run_rl(resolved, resume=resume, overwrite=overwrite, progress=progress)


def rl_config(
    algo: str | None = None, *, config: str | Path | None = None, resume: bool = False, **settings: object
) -> RLConfig:
    """The ``RLConfig`` that ``train_rl`` with these arguments runs (``algo`` None: the file's, or ppo)."""
    from alignloop.rl.config import RLConfig
    from alignloop.runs import resolve_run_config

    stage = algo or RLConfig.model_fields["algo"].default  # whose newest run a resume without a file continues
    return resolve_run_config(RLConfig, config, {**settings, "algo": algo}, stage=stage, resume=resume)


def train_ppo(**settings: object) -> RLRunResult:
    """``train_rl`` with PPO: the classic RLHF step (value head, GAE, adaptive KL penalty)."""
    return train_rl("ppo", **settings)  # type: ignore[arg-type]
