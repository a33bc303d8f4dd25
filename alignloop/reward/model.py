"""The reward model: a sequence classifier with one output, loaded from a run directory and used to score texts.

    rm = RewardModel.load("runs/reward-1")
    rm.score(["How do I ...?"], ["You can ..."])  # -> [0.83], normalised: mean 0, std 1 over the training completions

The RL stage calls ``score``; ``alignloop score`` calls ``score_file``.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from alignloop.errors import AlignloopError, InputError
from alignloop.reward.data import Encoded, Prompt, SequenceEncoder

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

log = logging.getLogger(__name__)

META_FILE = "alignloop_reward.json"  # in model/: how inputs are formatted
NORMALIZATION_FILE = (
    "normalization.json"  # in the run dir: {"mean", "std"} of raw rewards over the training completions
)
# in an ensemble's run dir: {"members": ["members/1", ...]}, the run dirs of the members after the first
ENSEMBLE_FILE = "ensemble.json"


def load_backbone(path: str, *, dtype: torch.dtype | None = None) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """A one-output sequence classifier (new score head if ``path`` is a bare backbone) and its tokenizer.

    The tokenizer pads on the right; a decoder without a pad token pads with its end token,
    and its score head reads the last non-pad token.
    """
    from transformers import AutoModelForSequenceClassification

    from alignloop.models import LOAD_OPTIONS, load_tokenizer

    try:
        tokenizer = load_tokenizer(path, padding_side="right")
        model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1, dtype=dtype, **LOAD_OPTIONS)
    except (OSError, ValueError) as exc:
        raise AlignloopError(f"cannot load reward backbone {path!r} as a sequence classifier: {exc}") from exc
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def context_length(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, max_length: int) -> int:
    """``max_length`` capped by the backbone's position embeddings and the tokenizer's limit."""
    limits = [max_length, getattr(model.config, "max_position_embeddings", None), tokenizer.model_max_length]
    return min(int(n) for n in limits if n and n < 10**9)


class RewardMember:
    """One trained classifier of a reward run, with its normalisation statistics (raw = mean + std · normalised).

    A per-group model (``grouped.py``) has a head per labeler group (``groups``, their names) and
    statistics per group (``group_stats``: name → (mean, std)); its texts are scored for one group.
    """

    def __init__(
        self,
        model: PreTrainedModel,
        *,
        mean: float = 0.0,
        std: float = 1.0,
        pooling: str = "cls",
        groups: list[str] | None = None,
        group_stats: dict[str, tuple[float, float]] | None = None,
    ) -> None:
        from alignloop.reward.grouped import GroupedScorer
        from alignloop.reward.packing import RewardScorer

        self.model = model.eval()
        # packs short texts together where the architecture allows
        # in eval mode as a whole, so a caller that switches it and back (evaluation) leaves dropout off
        self.scorer: RewardScorer | GroupedScorer = RewardScorer(self.model, pooling=pooling).eval()  # type: ignore[arg-type]
        if groups:
            self.scorer = GroupedScorer(self.scorer, groups).to(next(self.model.parameters()).device).eval()
        self.groups = list(groups or [])
        self.group_stats = group_stats or {}
        self.mean = mean
        self.std = std

    def stats(self, group: str | None) -> tuple[float, float]:
        """(mean, std) of raw rewards over the training completions: the group's for a per-group model."""
        return self.group_stats[group] if group is not None else (self.mean, self.std)

    def raw(self, encoded: list[Encoded], pad_id: int, batch_size: int) -> list[float]:
        """Raw rewards of encoded texts, in their order; batched by length, so no score depends on its batch.
        A per-group model reads each text with the head of its ``Encoded.group``."""
        import torch

        from alignloop.reward.packing import make_batch

        device = next(self.model.parameters()).device
        order = sorted(range(len(encoded)), key=lambda i: len(encoded[i].input_ids))
        raw = [0.0] * len(encoded)
        with torch.inference_mode():
            for start in range(0, len(order), batch_size):
                ids = order[start : start + batch_size]
                batch = {k: v.to(device) for k, v in make_batch(encoded, ids, pad_id, self.scorer.mode).items()}
                for i, r in zip(ids, self.scorer(**batch).float().tolist()):
                    raw[i] = r
        return raw


class RewardModel:
    """A trained reward model: one classifier, or an ensemble of several trained alike (``members``), and the
    tokenizer they share.

    An ensemble's score is the mean of its members' normalised scores, z̄ = (1/M) Σ_m (r_m − μ_m) / σ_m, each
    member normalised with its own training statistics. On the raw scale it is r̄ = μ̄ + σ̄ · z̄, with μ̄ and σ̄
    the means of the members' μ_m and σ_m (``mean``, ``std``), so σ(r̄_i − r̄_j) is a Bradley–Terry
    probability on the members' typical scale. With one member both are exactly that model's scores.
    """

    def __init__(
        self,
        members: list[RewardMember],
        tokenizer: PreTrainedTokenizerBase,
        *,
        max_length: int,
        input_format: str | None = None,
        newline: str | None = None,
    ) -> None:
        self.members = members
        self.tokenizer = tokenizer
        self.encoder = SequenceEncoder(tokenizer, max_length, input_format, newline)  # type: ignore[arg-type]
        self.mean = sum(m.mean for m in members) / len(members)
        self.std = sum(m.std for m in members) / len(members)

    @classmethod
    def load(cls, run_dir: str | Path, device: str | None = None) -> RewardModel:
        """Load ``run_dir/model`` and ``run_dir/normalization.json`` (a run of ``alignloop train-reward``), and,
        for an ensemble, the other members that ``run_dir/ensemble.json`` lists (``members/<i>/``, same layout)."""
        from alignloop.models import pick_device

        run_dir = Path(run_dir)
        ensemble_file = run_dir / ENSEMBLE_FILE
        others = json.loads(ensemble_file.read_text())["members"] if ensemble_file.exists() else []
        members, tokenizer, meta, max_length = [], None, {}, 0
        for member_dir in [run_dir, *(run_dir / other for other in others)]:
            model_dir = member_dir / "model"
            if not (model_dir / "config.json").exists():
                raise AlignloopError(
                    f"{member_dir} holds no trained reward model (no model/config.json); train one with "
                    "`alignloop train-reward`"
                )
            model, member_tokenizer = load_backbone(str(model_dir))
            if tokenizer is None:  # the members share the backbone, so the first one's tokenizer and format
                tokenizer = member_tokenizer
                meta = json.loads((model_dir / META_FILE).read_text()) if (model_dir / META_FILE).exists() else {}
                max_length = context_length(model, tokenizer, int(meta.get("max_length", 512)))
            norm_file = member_dir / NORMALIZATION_FILE
            norm = json.loads(norm_file.read_text()) if norm_file.exists() else {"mean": 0.0, "std": 1.0}
            model.to(pick_device(device))
            member = RewardMember(
                model,
                mean=norm["mean"],
                std=norm["std"],
                pooling=meta.get("pooling", "cls"),
                groups=meta.get("groups"),
                group_stats={g: (s["mean"], s["std"]) for g, s in norm.get("groups", {}).items()},
            )
            if member.groups:
                member.scorer.load(model_dir)  # type: ignore[union-attr]
            members.append(member)
        # a model saved before line breaks were marked has no "newline": its texts are scored as it was trained
        return cls(
            members,
            tokenizer,
            max_length=max_length,
            input_format=meta.get("input_format"),
            newline=meta.get("newline"),
        )

    @property
    def device(self) -> torch.device:
        return next(self.members[0].model.parameters()).device

    @property
    def groups(self) -> list[str]:
        """The labeler groups a per-group model scores for (``score(..., group=)``); empty for any other."""
        return self.members[0].groups

    def score(
        self,
        prompts: list[Prompt],
        completions: list[str],
        *,
        normalize: bool = True,
        batch_size: int = 32,
        group: str | None = None,
    ) -> list[float]:
        """One reward per (prompt, completion), in input order; a prompt may be a string or a chat message list.

        Normalised scores are ``(raw - mean) / std`` with the training statistics; an ensemble's
        are the mean of its members' normalised scores, and its raw scores that mean on the raw
        scale (see the class). A completion too long for the model is cut at its end, with a warning.
        A per-group model scores as ``group`` judges, normalised with that group's statistics.
        """
        members = self.member_scores(prompts, completions, normalize=normalize, batch_size=batch_size, group=group)
        if len(members) == 1:
            return members[0]
        return [sum(column) / len(column) for column in zip(*members)]

    def raw_stats(self, group: str | None = None) -> tuple[float, float]:
        """(mean, std) that turn ``score(..., normalize=False, group=group)`` into the normalised scores: one
        model's own (its group's, for a per-group model); an ensemble's raw scale is already shared."""
        return self.members[0].stats(group) if len(self.members) == 1 else (self.mean, self.std)

    def member_scores(
        self,
        prompts: list[Prompt],
        completions: list[str],
        *,
        normalize: bool = True,
        batch_size: int = 32,
        group: str | None = None,
    ) -> list[list[float]]:
        """Each member's reward per (prompt, completion): shape (members, rows); ``score`` is their mean.

        Normalised: member m's z_m = (r_m − μ_m) / σ_m. Raw: μ̄ + σ̄ · z_m, each member on the ensemble's
        raw scale, so that their spread is the members' disagreement in the units of the ensemble's raw
        score (what ``ranking_uncertainty`` reads); one model's raw scores are returned as they are.
        """
        if len(prompts) != len(completions):
            raise AlignloopError(f"{len(prompts)} prompts but {len(completions)} completions")
        check_group(self.groups, group)
        if not prompts:
            return [[] for _ in self.members]
        encoded = self.encoder.encode(prompts, completions, truncate=True)
        for i, enc in enumerate(encoded):
            if enc.status == "prompt_too_long":
                raise InputError(
                    f"the prompt does not fit the reward model's context of {self.encoder.max_length} tokens",
                    line=i + 1,
                    field="prompt",
                )
        cut = sum(enc.status == "truncated" for enc in encoded)
        if cut:
            log.warning(
                "%d of %d completions were cut to the reward model's %d tokens",
                cut,
                len(encoded),
                self.encoder.max_length,
            )
        if group is not None:
            for enc in encoded:
                enc.group = self.groups.index(group)
        raw = [member.raw(encoded, self.tokenizer.pad_token_id, batch_size) for member in self.members]
        if not normalize and len(raw) == 1:
            return raw
        stats = [m.stats(group) for m in self.members]
        z = [[(r - mean) / std for r in rows] for (mean, std), rows in zip(stats, raw)]
        return z if normalize else [[self.mean + self.std * v for v in rows] for rows in z]


def saved_groups(run_dir: str | Path) -> list[str]:
    """The labeler groups the reward model in ``run_dir`` scores for (``model/alignloop_reward.json``), read
    without loading it, so a command can refuse a wrong group before any work; empty for a pooled model."""
    meta_file = Path(run_dir) / "model" / META_FILE
    meta = json.loads(meta_file.read_text()) if meta_file.exists() else {}
    return list(meta.get("groups") or [])


def check_group(groups: list[str], group: str | None, model: str = "this reward model") -> None:
    """A per-group model (``groups``, its group names) scores for one of its groups; any other model for
    everyone. ``model`` names it in the error."""
    if not groups and group is not None:
        raise AlignloopError(
            f"{model} was not trained per labeler group, so it has no group {group!r}: train one with "
            "`alignloop train-reward --per-group` on pairs from `alignloop export-pairs --by-group`"
        )
    if groups and group not in groups:
        known = ", ".join(groups)
        asked = "no group was given (choose one with `group`)" if group is None else f"it has no group {group!r}"
        raise AlignloopError(f"{model} scores per labeler group ({known}) and {asked}")


def p_chosen(raw_chosen: float, raw_rejected: float) -> float:
    """Bradley–Terry probability that ``chosen`` is preferred: σ(r_chosen − r_rejected) on raw rewards."""
    return 1.0 / (1.0 + math.exp(-(raw_chosen - raw_rejected)))


def score_file(
    run_dir: str | Path,
    input_path: str | Path,
    *,
    batch_size: int = 32,
    group: str | None = None,
    output: str | Path | None = None,
) -> list[dict[str, Any]]:
    """Rows of a JSONL file with scores added, also written to ``output`` (atomically) when given.

    A row with ``prompt`` (or ``messages``) and ``completion`` gets ``reward``; a row with
    ``chosen`` and ``rejected`` gets ``reward_chosen``, ``reward_rejected`` (normalised) and
    ``p_chosen`` (σ of the raw difference). Anything else in a row is kept as it is. A per-group
    model scores as labeler group ``group`` judges (its head, normalised with its statistics).
    """
    from alignloop.jsonl import read_jsonl, require_str, write_jsonl

    rows: list[dict[str, Any]] = []
    jobs: list[tuple[int, str, Prompt, str]] = []  # (row, output key, prompt, completion)
    for line, obj in read_jsonl(input_path):
        prompt: Prompt
        if isinstance(obj.get("messages"), list) and "prompt" not in obj:
            prompt = obj["messages"]
        else:
            prompt = require_str(obj, "prompt", file=input_path, line=line)
        if "completion" in obj:
            jobs.append(
                (
                    len(rows),
                    "reward",
                    prompt,
                    require_str(obj, "completion", file=input_path, line=line, allow_empty=True),
                )
            )
        elif "chosen" in obj or "rejected" in obj:
            for side in ("chosen", "rejected"):
                jobs.append(
                    (
                        len(rows),
                        f"reward_{side}",
                        prompt,
                        require_str(obj, side, file=input_path, line=line, allow_empty=True),
                    )
                )
        else:
            raise InputError(
                "expected `completion`, or `chosen` and `rejected`", file=input_path, line=line, field="completion"
            )
        rows.append(dict(obj))
    model = RewardModel.load(run_dir)
    check_group(model.groups, group, f"reward model {run_dir}")
    raw = model.score([j[2] for j in jobs], [j[3] for j in jobs], normalize=False, batch_size=batch_size, group=group)
    mean, std = model.raw_stats(group)
    for (row, key, _, _), r in zip(jobs, raw):
        rows[row][key] = (r - mean) / std
        rows[row]["_raw_" + key] = r
    for row in rows:
        if "_raw_reward_chosen" in row:
            row["p_chosen"] = p_chosen(row.pop("_raw_reward_chosen"), row.pop("_raw_reward_rejected"))
        row.pop("_raw_reward", None)
    if output is not None:
        write_jsonl(output, rows)
    return rows
