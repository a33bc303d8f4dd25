"""The generate stage: K completions per prompt, into the current round of the feedback store.

Work is planned as the (prompt, sample index) slots of the round that have no
completion yet, so a re-run after an interrupt generates exactly what is missing.
Each slot's seed is derived from the base seed, the prompt and the sample index,
and the backend samples every row from its own seed, so a completion does not
depend on batching or on where a previous run stopped. Completions are committed
batch by batch. The K completions of a prompt are kept distinct: a sample that
repeats a sibling's text is drawn again with the next seed (a few attempts).
"""

from __future__ import annotations

import hashlib
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import func, select

from alignloop.backends import GenerationBackend, HFBackend, SamplingParams, decode_completion, encode_prompts
from alignloop.config import PROJECT_FILE, GenerateConfig, settings_from
from alignloop.errors import ConfigError, InputError
from alignloop.models import load_policy, pick_device, resolve_policy
from alignloop.project import ProjectHandle
from alignloop.prompts import conversation
from alignloop.records import GeneratedText
from alignloop.store import Completion, Prompt
from alignloop.task_types import TASK_TYPES
from alignloop.vllm_backend import VLLMBackend

if TYPE_CHECKING:
    from rich.progress import Progress, Task, TaskID

__all__ = [
    "GenerateResult",
    "HFBackend",
    "SamplingParams",
    "VLLMBackend",
    "generate_completions",
    "make_backend",
    "slot_seed",
]

MAX_ATTEMPTS = 4  # draws per slot before a repeated text is accepted


@dataclass
class GenerateResult:
    round_index: int
    prompts: int  # prompts that needed completions
    generated: int
    already_done: int
    seconds: float

    @property
    def completions_per_s(self) -> float:
        return self.generated / self.seconds if self.seconds > 0 else 0.0

    def __add__(self, other: GenerateResult) -> GenerateResult:
        """Two samplings of the same round (e.g. its train and test prompts) counted as one."""
        return GenerateResult(
            self.round_index,
            self.prompts + other.prompts,
            self.generated + other.generated,
            self.already_done + other.already_done,
            self.seconds + other.seconds,
        )


def slot_seed(base_seed: int, prompt_id: int, sample_index: int, attempt: int = 0) -> int:
    """A 31-bit seed for one completion slot, stable across runs and batchings."""
    digest = hashlib.sha256(f"{base_seed}:{prompt_id}:{sample_index}:{attempt}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def project_generate_config(handle: ProjectHandle, overrides: dict[str, object]) -> GenerateConfig:
    """The project's ``generate:`` settings with ``overrides``, sampling from the current round's policy unless
    ``model`` is given; refused with the file or flag at fault, as is a K too small for the task type."""
    base = handle.config.generate.model_dump()
    if "model" not in overrides:  # sample from the policy of the current round
        with handle.store.session() as s:
            base["model"] = handle.current_round(s).policy
    try:
        config = settings_from(GenerateConfig, overrides, base)
    except ConfigError as exc:  # a bad key of alignloop.yaml (a bad keyword is named by its flag)
        raise ConfigError(exc.message, file=handle.dir / PROJECT_FILE, field=f"generate.{exc.field}") from None
    task_type = TASK_TYPES[handle.config.labeling.task_type]
    if config.k < task_type.min_completions:
        where = {"field": "-k"} if "k" in overrides else {"file": handle.dir / PROJECT_FILE, "field": "generate.k"}
        raise InputError(
            f"k = {config.k}: a {task_type.name} task needs at least {task_type.min_completions} completions "
            "per prompt",
            **where,
        )
    return config


def make_backend(config: GenerateConfig, device: str | None = None) -> tuple[GenerationBackend, str]:
    """The configured backend and the resolved model path it samples from."""
    path = resolve_policy(config.model)
    if config.backend == "vllm":
        from alignloop.models import load_tokenizer

        return VLLMBackend(path, load_tokenizer(path), dtype=config.dtype), path
    model, tokenizer = load_policy(path, device=str(pick_device(device)), dtype=config.dtype, purpose="sampling")
    return HFBackend(model, tokenizer, batch_size=config.batch_size), path


def generate_fresh(
    handle: ProjectHandle, config: GenerateConfig, *, train: int | None, test: int = 0, progress: bool = False
) -> GenerateResult:
    """A new round's samples, with one loaded model: prompts no round has sampled yet, at most ``train`` of the
    train split (None: all) and ``test`` of the test split. Fresh test prompts let a held-out reward model
    retrained after labelling know the new policy's answers (see ``alignloop.api.next_round``)."""
    backend, _ = make_backend(config)
    result = generate_completions(
        handle, config, split="train", limit=train, fresh_only=True, backend=backend, progress=progress
    )
    if test:
        result += generate_completions(
            handle, config, split="test", limit=test, fresh_only=True, backend=backend, progress=progress
        )
    return result


def generate_completions(
    handle: ProjectHandle,
    config: GenerateConfig,
    *,
    split: str | None = None,
    limit: int | None = None,
    backend: GenerationBackend | None = None,
    fresh_only: bool = False,
    progress: bool = False,
) -> GenerateResult:
    """Fill every prompt of the current round up to ``config.k`` completions.

    ``fresh_only`` skips prompts that already have completions in another round, so a new
    round samples prompts the loop has not labelled yet.
    """
    started = time.perf_counter()
    if backend is None:  # a model that cannot be found is an error even when nothing is left to sample
        resolve_policy(config.model)
    with handle.store.session() as s:
        current = handle.current_round(s)
        round_id, round_index = current.id, current.index
        query = select(Prompt).where(Prompt.project_id == handle.project_id).order_by(Prompt.id)
        if split:
            query = query.where(Prompt.split == split)
        if fresh_only:
            earlier = select(Completion.prompt_id).where(Completion.round_id != round_id)
            query = query.where(Prompt.id.not_in(earlier))
        if limit:
            query = query.limit(limit)
        prompts = list(s.scalars(query))
        counts = dict(
            s.execute(
                select(Completion.prompt_id, func.count())
                .where(Completion.round_id == round_id)
                .group_by(Completion.prompt_id)
            ).all()
        )
        done_slots = set(
            s.execute(
                select(Completion.prompt_id, Completion.sample_index).where(Completion.round_id == round_id)
            ).all()
        )
    todo = [(p, i) for p in prompts for i in range(config.k) if (p.id, i) not in done_slots]
    already = sum(min(counts.get(p.id, 0), config.k) for p in prompts)
    needing = len({p.id for p, _ in todo})
    if not todo:
        return GenerateResult(round_index, 0, 0, already, time.perf_counter() - started)

    model_ref = config.model
    if backend is None:
        backend, _ = make_backend(config)
    params = SamplingParams(config.temperature, config.top_p, config.max_new_tokens)
    prompt_ids = dict(
        zip(
            (p.id for p in prompts),
            encode_prompts(backend.tokenizer, [conversation(p) for p in prompts]),
        )
    )
    context = _context_length(backend)
    for p in prompts:
        if context and len(prompt_ids[p.id]) + config.max_new_tokens > context:
            raise InputError(
                f"prompt is {len(prompt_ids[p.id])} tokens; with max_new_tokens={config.max_new_tokens} "
                f"it exceeds the model's context of {context}",
                file=p.source,
                field=f"prompt {p.id}",
            )
    texts: dict[int, set[str]] = defaultdict(set)
    with handle.store.session() as s:
        for prompt_id, text in s.execute(
            select(Completion.prompt_id, Completion.text).where(Completion.round_id == round_id)
        ):
            texts[prompt_id].add(text)

    generated = 0
    batch = getattr(backend, "batch_size", 16) * 4  # slots committed together
    bar = _progress(progress, len(todo))
    try:
        for start in range(0, len(todo), batch):
            slots = [(p, i, 0) for p, i in todo[start : start + batch]]
            rows: list[Completion] = []
            while slots:
                seeds = [slot_seed(config.seed, p.id, i, attempt) for p, i, attempt in slots]
                outputs = backend.generate_ids([prompt_ids[p.id] for p, _, _ in slots], params, seeds)
                retry = []
                for (p, i, attempt), seed, ids in zip(slots, seeds, outputs):
                    out = _decode(backend, prompt_ids[p.id], ids)
                    if out.text in texts[p.id] and attempt + 1 < MAX_ATTEMPTS:
                        retry.append((p, i, attempt + 1))
                        continue
                    texts[p.id].add(out.text)
                    rows.append(
                        Completion(
                            prompt_id=p.id,
                            round_id=round_id,
                            sample_index=i,
                            text=out.text,
                            model=model_ref,
                            seed=seed,
                            params={
                                "temperature": params.temperature,
                                "top_p": params.top_p,
                                "max_new_tokens": params.max_new_tokens,
                            },
                            prompt_tokens=out.prompt_tokens,
                            completion_tokens=out.completion_tokens,
                            finish_reason=out.finish_reason,
                        )
                    )
                slots = retry
            with handle.store.session() as s:
                s.add_all(rows)
            generated += len(rows)
            if bar is not None:
                bar[0].update(bar[1], advance=len(rows))
    finally:
        if bar is not None:
            bar[0].stop()
    return GenerateResult(round_index, needing, generated, already, time.perf_counter() - started)


def _decode(backend: GenerationBackend, prompt_ids: list[int], ids: list[int]) -> GeneratedText:
    end_ids = getattr(backend, "end_ids", None) or {backend.tokenizer.eos_token_id}
    return decode_completion(backend.tokenizer, prompt_ids, ids, end_ids)


def _context_length(backend: GenerationBackend) -> int | None:
    model = getattr(backend, "model", None)
    return getattr(getattr(model, "config", None), "max_position_embeddings", None)


def _progress(enabled: bool, total: int) -> tuple[Progress, TaskID] | None:
    if not enabled:
        return None
    from rich.progress import BarColumn, MofNCompleteColumn, ProgressColumn, TextColumn, TimeRemainingColumn
    from rich.progress import Progress as ProgressBar
    from rich.text import Text

    class Rate(ProgressColumn):
        def render(self, task: Task) -> Text:
            speed = task.finished_speed or task.speed
            return Text("" if speed is None else f"{speed:.2f} completions/s")

    progress = ProgressBar(TextColumn("generating"), BarColumn(), MofNCompleteColumn(), Rate(), TimeRemainingColumn())
    progress.start()
    return progress, progress.add_task("generate", total=total)
