"""The prompts an RL run trains on: a JSONL file, or a project's train split."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from alignloop.errors import AlignloopError, InputError
from alignloop.jsonl import read_jsonl, require_str

Conversation = list[dict[str, str]]


@dataclass
class RLPrompt:
    messages: Conversation  # the chat the policy continues
    text: str  # the last user turn, as rewards see the prompt


def read_prompt_file(path: str | Path) -> list[RLPrompt]:
    """JSONL with a ``prompt`` string or a ``messages`` list of ``{"role", "content"}`` per line."""
    prompts = []
    for line, obj in read_jsonl(path):
        if "messages" in obj:
            messages = obj["messages"]
            if not isinstance(messages, list) or not messages:
                raise InputError("expected a non-empty list of messages", file=path, line=line, field="messages")
            for i, message in enumerate(messages):
                if not isinstance(message, dict):
                    raise InputError("expected {role, content}", file=path, line=line, field=f"messages[{i}]")
                require_str(message, "role", file=path, line=line)
                require_str(message, "content", file=path, line=line, allow_empty=True)
            prompts.append(RLPrompt(messages, _last_user_turn(messages)))
        elif "prompt" in obj:
            text = require_str(obj, "prompt", file=path, line=line)
            prompts.append(RLPrompt([{"role": "user", "content": text}], text))
        else:
            raise InputError("each line needs a `prompt` or a `messages` field", file=path, line=line, field="prompt")
    if not prompts:
        raise InputError("no prompts in the file", file=path)
    return prompts


def project_prompts(project_dir: str | Path) -> list[RLPrompt]:
    """The train-split prompts of a project, in id order."""
    from sqlalchemy import select

    from alignloop.project import open_project
    from alignloop.store import Prompt

    with open_project(project_dir) as handle:
        with handle.store.session() as s:
            rows = s.scalars(
                select(Prompt)
                .where(Prompt.project_id == handle.project_id, Prompt.split == "train")
                .order_by(Prompt.id)
            ).all()
            prompts = [RLPrompt(r.messages or [{"role": "user", "content": r.text}], r.text) for r in rows]
    if not prompts:
        raise AlignloopError(f"project {project_dir} has no train-split prompts; add some with `alignloop prompts add`")
    return prompts


def _last_user_turn(messages: Conversation) -> str:
    users = [m["content"] for m in messages if m.get("role") == "user"]
    return users[-1] if users else messages[-1]["content"]
