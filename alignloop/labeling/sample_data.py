"""Synthetic tasks for tests, the load benchmark and demos: prompts with K completions in a round.

Real projects get their completions from ``alignloop generate``; this writes the
same rows directly, so the labeling app can be exercised without a model.
"""

from __future__ import annotations

import hashlib

from alignloop.store import Completion, Prompt, Round, Store


def add_sample_tasks(
    store: Store,
    project_id: int,
    *,
    n_prompts: int,
    k: int = 4,
    kind: str = "train",
    models: tuple[str, ...] = ("sample-model",),
) -> tuple[int, list[int]]:
    """Add a round of ``kind`` with ``n_prompts`` prompts of ``k`` completions; returns (round id, prompt ids).

    Evaluation rounds (``kind="eval"``) alternate completions between ``models``, as a
    blind comparison of two policies would.
    """
    with store.session() as s:
        round_ = Round.append(s, project_id, kind, models[0])
        index = round_.index
        prompt_ids = []
        for i in range(n_prompts):
            text = f"Round {index}, question {i}: explain idea number {i} in one paragraph."
            prompt = Prompt(
                project_id=project_id,
                text=text,
                messages=[{"role": "user", "content": text}],
                text_hash=hashlib.sha256(text.encode()).hexdigest(),
                split="train",
                source="sample",
            )
            s.add(prompt)
            s.flush()
            prompt_ids.append(prompt.id)
            for j in range(k):
                model = models[j % len(models)]
                s.add(
                    Completion(
                        prompt_id=prompt.id,
                        round_id=round_.id,
                        sample_index=j,
                        text=f"Answer {j} to question {i}: " + "some words " * (j + 1),
                        model=model,
                        seed=1000 * i + j,
                        params={"temperature": 0.9, "top_p": 0.95, "max_new_tokens": 32},
                        prompt_tokens=12,
                        completion_tokens=4 + 2 * j,
                        finish_reason="stop",
                    )
                )
        return round_.id, prompt_ids
