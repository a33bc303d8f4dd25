"""The project report: one self-contained HTML file with the loop's figures, stage by stage.

Everything comes from the project's artifacts — the store (labels), ``consensus/``
(agreement, labeler quality), and the runs each round recorded (reward model, RL,
evaluation) — so ``alignloop report`` can rebuild it at any time. Images are inlined
as base64 PNG and the style sheet is inline: the file needs nothing else to open.
"""

from __future__ import annotations

import base64
import html
import json
import statistics
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from alignloop.project import ProjectHandle
from alignloop.rounds import RoundInfo, list_rounds
from alignloop.store import Assignment, Completion, Judgement, Labeler, Prompt, Round

SECTIONS = (
    "Labels",
    "Feedback from use",
    "Agreement",
    "Labeler quality",
    "Reward model",
    "RL fine-tuning",
    "Evaluation",
    "Per-group policies",
    "Over-optimisation",
    "Samples",
)

STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:70rem;color:#1c2430;
line-height:1.45;padding:0 1rem}h1{margin-bottom:.2rem}h2{border-bottom:2px solid #dfe4ea;padding-bottom:.2rem;
margin-top:2.2rem}table{border-collapse:collapse;margin:.6rem 0}td,th{border:1px solid #dfe4ea;padding:.3rem .6rem;
text-align:left;vertical-align:top}th{background:#f3f5f8}.num{text-align:right;font-variant-numeric:tabular-nums}
.flag{color:#b42318;font-weight:600}.muted{color:#667085}img{max-width:100%;border:1px solid #eef1f4}
.figs{display:flex;flex-wrap:wrap;gap:1rem}.figs img{max-width:32rem}.sample td{max-width:28rem;white-space:pre-wrap}
.kpi{display:inline-block;margin:0 1.5rem .6rem 0}.kpi b{display:block;font-size:1.5rem}
.verdict{font-size:1.15rem;padding:.6rem .9rem;background:#f3f5f8;border-left:4px solid #1c2430}
.warn{padding:.5rem .9rem;background:#fef3f2;border-left:4px solid #b42318;color:#7a271a;margin:.4rem 0}
"""


def _img(path: Path | None, alt: str) -> str:
    if path is None or not path.exists():
        return f'<p class="muted">({html.escape(alt)}: not produced yet)</p>'
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return html.escape(str(value))


def _table(header: list[str], rows: list[list[Any]], classes: list[str] | None = None) -> str:
    classes = classes or [""] * len(header)
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f'<td class="{c}">{cell}</td>' for c, cell in zip(classes, row)) + "</tr>" for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _kpis(items: list[tuple[str, str]]) -> str:
    return "".join(f'<span class="kpi"><b>{value}</b>{html.escape(label)}</span>' for label, value in items)


def _read_json(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None


def _metrics(run: Path) -> list[dict[str, Any]]:
    path = run / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _labels_section(handle: ProjectHandle) -> str:
    with handle.store.session() as s:
        kinds = dict(s.execute(select(Judgement.kind, func.count()).group_by(Judgement.kind)).all())
        labelers = s.scalar(select(func.count(func.distinct(Judgement.labeler_id))))
        prompts = s.scalar(select(func.count(func.distinct(Judgement.prompt_id))))
        total_prompts = s.scalar(select(func.count()).select_from(Prompt).where(Prompt.project_id == handle.project_id))
        seconds = [v for v in s.scalars(select(Judgement.seconds_spent)) if v is not None]
        accounts = s.scalar(select(func.count()).select_from(Labeler))
    return _kpis(
        [
            ("judgements", str(sum(v for k, v in kinds.items() if k != "skip"))),
            ("skipped", str(kinds.get("skip", 0))),
            ("labelers who judged", f"{labelers} of {accounts}"),
            ("prompts judged", f"{prompts} of {total_prompts}"),
            ("median seconds per task", _fmt(statistics.median(seconds), 1) if seconds else "–"),
        ]
    )


def _feedback_section(handle: ProjectHandle) -> str:
    """Per served model version (serve round): answers served, users, and their live feedback."""
    with handle.store.session() as s:
        rounds = s.execute(
            select(Round.id, Round.index, Round.policy)
            .where(Round.project_id == handle.project_id, Round.kind == "serve")
            .order_by(Round.index)
        ).all()
        if not rounds:
            return '<p class="muted">No model served yet (<code>alignloop serve-model</code>).</p>'
        ids = [r.id for r in rounds]
        answers = dict(
            s.execute(
                select(Completion.round_id, func.count())
                .where(Completion.round_id.in_(ids))
                .group_by(Completion.round_id)
            ).all()
        )
        users = dict(
            s.execute(
                select(Assignment.round_id, func.count(func.distinct(Assignment.labeler_id)))
                .where(Assignment.round_id.in_(ids))
                .group_by(Assignment.round_id)
            ).all()
        )
        judgements = list(
            s.execute(
                select(
                    Judgement.id, Judgement.round_id, Judgement.kind, Judgement.thumbs, Judgement.supersedes_id
                ).where(Judgement.round_id.in_(ids))
            )
        )
    superseded = {j.supersedes_id for j in judgements if j.supersedes_id is not None}
    tally: dict[int, dict[str, int]] = {r.id: {"up": 0, "down": 0, "choices": 0} for r in rounds}
    for j in judgements:
        if j.id in superseded:
            continue
        if j.kind == "thumbs":
            tally[j.round_id]["up"] += sum(v > 0 for v in j.thumbs.values())
            tally[j.round_id]["down"] += sum(v < 0 for v in j.thumbs.values())
        elif j.kind == "pairwise":
            tally[j.round_id]["choices"] += 1
    rows = [
        [
            _fmt(r.policy),
            _fmt(r.index),
            _fmt(answers.get(r.id, 0)),
            _fmt(users.get(r.id, 0)),
            _fmt(tally[r.id]["up"]),
            _fmt(tally[r.id]["down"]),
            _fmt(tally[r.id]["choices"]),
        ]
        for r in rounds
    ]
    return _table(
        ["model version", "round", "answers served", "users", "thumbs up", "thumbs down", "choices between two"],
        rows,
        ["", "num", "num", "num", "num", "num", "num"],
    )


def _agreement_section(summary: dict[str, Any] | None) -> str:
    if summary is None:
        return '<p class="muted">Run <code>alignloop consensus</code> to measure agreement.</p>'
    return _kpis(
        [
            ("mean Kendall's W per prompt", _fmt(summary.get("kendall_w_mean"))),
            ("Krippendorff's α (ordinal)", _fmt(summary.get("krippendorff_alpha"))),
            ("pairwise agreement (the ceiling)", _fmt(summary.get("pairwise_agreement"))),
            ("prompts with a consensus", _fmt(summary.get("prompts"))),
        ]
    )


def _quality_section(summary: dict[str, Any] | None, chart: Path) -> str:
    if summary is None:
        return ""
    rows = []
    for lab in summary.get("labelers", []):
        flagged = lab.get("flagged")
        rows.append(
            [
                _fmt(lab.get("name")),
                _fmt(lab.get("n_judgements")),
                _fmt(lab.get("tau")),
                _fmt(lab.get("tau_shrunk")),
                _fmt(lab.get("position_bias")),
                f'<span class="flag">flagged: {_fmt(lab.get("reason"))}</span>' if flagged else "",
            ]
        )
    table = _table(
        ["labeler", "judgements", "τ vs others", "τ shrunk", "first-shown first", "outlier"],
        rows,
        ["", "num", "num", "num", "num", ""],
    )
    groups = summary.get("labeler_groups") or []
    if len(groups) >= 2:
        items = "".join(
            f"<li>group {g['group']} (agree τ {_fmt(g.get('agreement'), 2)}): {_fmt(', '.join(g['names']))}</li>"
            for g in groups
        )
        table = (
            f"<p>The labelers form {len(groups)} groups with different tastes; each labeler is scored "
            f"against their own group.</p><ul>{items}</ul>" + table
        )
    return _img(chart, "labeler quality chart") + table


def _reward_eval(info: RoundInfo | None) -> dict[str, Any]:
    """The reward run's last held-out evaluation record (``rm/eval_accuracy``, ``rm/ceiling``, ...)."""
    if info is None or not info.reward_model:
        return {}
    evals = [m for m in _metrics(Path(info.reward_model)) if "rm/eval_accuracy" in m]
    return evals[-1] if evals else {}


def _reward_section(info: RoundInfo | None) -> str:
    if info is None or not info.reward_model:
        return '<p class="muted">No reward model trained yet.</p>'
    run = Path(info.reward_model)
    last = _reward_eval(info)
    kpis = _kpis(
        [
            ("held-out pairwise accuracy", _fmt(last.get("rm/eval_accuracy"))),
            ("labelers agree with each other (ceiling)", _fmt(last.get("rm/inter_labeler"))),
            ("labelers agree with their consensus", _fmt(last.get("rm/ceiling"))),
            ("calibration error (ECE)", _fmt(last.get("rm/ece"))),
            ("held-out pairs", _fmt(last.get("rm/eval_pairs"), 0)),
        ]
    )
    figs = _img(run / "plots" / "loss.png", "reward-model loss") + _img(run / "plots" / "accuracy.png", "accuracy")
    return f"<p class='muted'>{html.escape(str(run))}</p>{kpis}<div class='figs'>{figs}</div>"


def _rl_section(info: RoundInfo | None) -> str:
    run_dir = (info.metrics.get("rl_run") if info else None) or None
    if run_dir is None:
        return '<p class="muted">No RL run yet.</p>'
    run = Path(run_dir)
    summary = _read_json(run / "summary.json") or {}
    final = summary.get("final", {})
    ns = next((k.split("/")[0] for k in final if k.endswith("/reward_mean")), "ppo")
    kpis = _kpis(
        [
            ("steps", _fmt(summary.get("steps"))),
            ("stopped because", _fmt(summary.get("stop_reason"))),
            ("final mean reward", _fmt(final.get(f"{ns}/reward_mean"))),
            ("final KL (nats)", _fmt(final.get(f"{ns}/kl"))),
        ]
    )
    figs = _img(run / "plots" / "reward.png", "reward curve") + _img(run / "plots" / "kl.png", "KL curve")
    return f"<p class='muted'>{html.escape(str(run))}</p>{kpis}<div class='figs'>{figs}</div>"


def _ci(ci: Any) -> str:
    return f"[{_fmt(ci[0])}, {_fmt(ci[1])}]" if ci else "–"


def _group_evaluations(trained: RoundInfo | None) -> dict[str, dict[str, Any]]:
    """Each labeler group's ``evaluation.json`` the round recorded (``evaluate --group``), by group, sorted."""
    groups = (trained.metrics.get("groups") or {}) if trained else {}
    found = {g: _read_json(Path(e["evaluation"])) if e.get("evaluation") else None for g, e in sorted(groups.items())}
    return {g: evaluation for g, evaluation in found.items() if evaluation}


def _groups_section(group_evaluations: dict[str, dict[str, Any]]) -> str:
    """Each labeler group's evaluation: every model by that group's judge and reward head."""
    rows = []
    for group, evaluation in group_evaluations.items():
        for m in evaluation["models"]:
            rows.append(
                [
                    html.escape(group),
                    html.escape(str(evaluation.get("judge") or "–")),
                    _fmt(m["model"]),
                    _fmt(m.get("judge_mean")),
                    f"{_fmt(m.get('judge_diff'))} {_ci(m.get('judge_diff_ci'))}" if m.get("judge_diff_ci") else "–",
                    f"{_fmt(m.get('judge_win_rate'))} {_ci(m.get('judge_win_ci'))}" if m.get("judge_win_ci") else "–",
                    _fmt(m["reward_mean"]),
                    _fmt(m["kl"]),
                ]
            )
    if not rows:
        return '<p class="muted">No group\'s policy evaluated yet (<code>alignloop evaluate --group</code>).</p>'
    table = _table(
        ["group", "judge", "model", "judge score", "Δ judge [95% CI]", "win rate (judge) [95% CI]",
         "reward (group's head)", "KL"],
        rows,
        ["", "", "", "num", "num", "num", "num", "num"],
    )  # fmt: skip
    return (
        "<p>Each labeler group's own evaluation: the same held-out prompts answered by every model, scored by that "
        "group's judge and by its head of the per-group reward model; differences and win rates are paired by "
        "prompt against each group's first model.</p>" + table
    )


def _evaluation_section(evaluation: dict[str, Any] | None) -> tuple[str, str]:
    if evaluation is None:
        return '<p class="muted">No evaluation yet (<code>alignloop evaluate</code>).</p>', ""
    rows = []
    for m in evaluation["models"]:
        rows.append(
            [
                _fmt(m["model"]),
                _fmt(m["reward_mean"]),
                f"{_fmt(m.get('reward_diff'))} {_ci(m.get('reward_diff_ci'))}" if m.get("reward_diff_ci") else "–",
                f"{_fmt(m['win_rate'])} {_ci(m['win_ci'])}" if m["win_ci"] else "–",
                _fmt(m.get("judge_mean")),
                f"{_fmt(m.get('judge_diff'))} {_ci(m.get('judge_diff_ci'))}" if m.get("judge_diff_ci") else "–",
                f"{_fmt(m.get('judge_win_rate'))} {_ci(m.get('judge_win_ci'))}" if m.get("judge_win_ci") else "–",
                _fmt(m["kl"]) + (" <span class='muted'>(analytic, upper bound)</span>" if m.get("best_of") else ""),
                _fmt(m["length"], 1),
            ]
        )
    table = _table(
        ["model", "reward", "Δ reward [95% CI]", "win rate (RM) [95% CI]", "judge", "Δ judge [95% CI]",
         "win rate (judge) [95% CI]", "KL", "tokens"],
        rows,
        ["", "num", "num", "num", "num", "num", "num", "num", "num"],
    )  # fmt: skip
    per_prompt = evaluation.get("samples_per_prompt", 1)
    best_of = evaluation.get("best_of")
    intro = (
        f"<p>{evaluation['prompts']} held-out prompts × {per_prompt} sample{'s' if per_prompt > 1 else ''} per "
        f"model; reward model {html.escape(evaluation['reward_model'])}; judge "
        f"{html.escape(str(evaluation.get('judge') or 'none'))}. Differences (Δ) and win rates are paired by prompt "
        "against the first model."
        + (
            f" The best-of-{best_of} row keeps the reward model's favourite of {best_of} samples of the first model: "
            "no training, KL log N − (N−1)/N."
            if best_of
            else ""
        )
        + "</p>"
    )
    names = [m["model"] for m in evaluation["models"]]
    sample_rows = [
        [html.escape(s["prompt"])]
        + [f"{html.escape(s[n])}<br><span class='muted'>reward {_fmt(s.get('reward:' + n), 2)}</span>" for n in names]
        for s in evaluation.get("samples", [])
    ]
    samples = _table(["prompt", *names], sample_rows).replace("<table>", "<table class='sample'>")
    return intro + table, samples


def _curve_section(curve_path: str | None) -> str:
    path = Path(curve_path) if curve_path else None
    curve = _read_json(path) if path else None
    if path is None or curve is None:
        return '<p class="muted">No over-optimisation curve yet (<code>alignloop curve RUN_DIR</code>).</p>'
    from alignloop.overoptimisation import PLOT_FILE

    picks = [
        [html.escape(criterion.replace("_", " ")), _fmt(step)] for criterion, step in curve.get("picks", {}).items()
    ]
    picks.append(["where the judge peaked (not used to pick)", _fmt(curve.get("judge_peak"))])
    return (
        f"<p class='muted'>{html.escape(curve['run'])}: every checkpoint on {curve['prompts']} held-out prompts</p>"
        + _img(path.parent / PLOT_FILE, "over-optimisation curve")
        + _table(["checkpoint chosen by", "step"], picks, ["", "num"])
    )


def _verdict_html(
    evaluation: dict[str, Any] | None, rm_eval: dict[str, Any], group_evaluations: dict[str, dict[str, Any]]
) -> str:
    """The report's opening: the verdict on the round's evaluation, then one per labeler group's evaluation."""
    from alignloop.verdict import accuracy_and_ceiling, reward_model_warnings, verdict

    accuracy, ceiling = accuracy_and_ceiling(rm_eval)
    found = verdict(evaluation, rm_accuracy=accuracy, rm_ceiling=ceiling) if evaluation else None
    warnings = found.warnings if found else reward_model_warnings(accuracy, ceiling)
    sentences = [found.sentence] if found else []
    for group, group_eval in group_evaluations.items():
        group_found = verdict(group_eval)
        if group_found is not None:
            sentences.append(f"Labeler group {group}: {group_found.sentence}")
    return "".join(f"<p class='verdict'>{html.escape(s)}</p>" for s in sentences) + "".join(
        f"<p class='warn'>⚠ {html.escape(w)}</p>" for w in warnings
    )


def build_report(handle: ProjectHandle, out: str | Path | None = None) -> Path:
    """Write ``<project>/report.html`` (or ``out``) from the project's artifacts; returns its path."""
    rounds = [r for r in list_rounds(handle) if r.kind == "train"]
    latest = rounds[-1] if rounds else None
    trained = next((r for r in reversed(rounds) if r.reward_model or r.metrics.get("rl_run")), latest)
    consensus_dir = handle.dir / "consensus"
    summary = _read_json(consensus_dir / "summary.json")
    evaluation_path = trained.metrics.get("evaluation") if trained else None
    evaluation = _read_json(Path(evaluation_path)) if evaluation_path else None
    evaluation_html, samples_html = _evaluation_section(evaluation)
    group_evaluations = _group_evaluations(trained)
    timings = _read_json(handle.dir / "demo.json")
    round_rows = [
        [
            _fmt(r.index),
            _fmt(r.policy),
            _fmt(r.completions),
            _fmt(r.dataset),
            _fmt(r.reward_model),
            _fmt(r.metrics.get("trained_policy")),
        ]
        for r in rounds
    ]
    body = {
        "Labels": _labels_section(handle)
        + _table(["round", "sampled from", "completions", "pairs", "reward model", "trained policy"], round_rows),
        "Feedback from use": _feedback_section(handle),
        "Agreement": _agreement_section(summary),
        "Labeler quality": _quality_section(summary, consensus_dir / "labelers.png"),
        "Reward model": _reward_section(trained),
        "RL fine-tuning": _rl_section(trained),
        "Evaluation": evaluation_html,
        "Per-group policies": _groups_section(group_evaluations),
        "Over-optimisation": _curve_section(trained.metrics.get("curve") if trained else None),
        "Samples": samples_html or '<p class="muted">No samples yet.</p>',
    }
    timing_html = ""
    if timings:
        stages = timings.get("stages", {})
        timing_html = "<h2>Run time</h2>" + _table(
            ["stage", "seconds"], [[html.escape(k), _fmt(v, 1)] for k, v in stages.items()], ["", "num"]
        )
    sections = "".join(f'<h2 id="{name.lower().replace(" ", "-")}">{name}</h2>{body[name]}' for name in SECTIONS)
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    page = (
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>alignloop report: "
        f"{html.escape(handle.config.name)}</title><style>{STYLE}</style></head><body>"
        f"<h1>alignloop report: {html.escape(handle.config.name)}</h1><p class='muted'>{stamp}</p>"
        f"{_verdict_html(evaluation, _reward_eval(trained), group_evaluations)}{sections}{timing_html}</body></html>"
    )
    path = Path(out) if out else handle.dir / "report.html"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(path)
    return path
