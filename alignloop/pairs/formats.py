"""Pairs files: the registry of pairs formats, and writing and reading them.

Each format is one ``PairsFormat`` in ``FORMATS`` (registered at the end of this module):
its name, a one-line description, how to write pairs as its rows, how to read one row,
and how to recognise a row of it. ``--format`` in the CLI, the labeling API's ``format``
parameter and the admin export page list ``FORMATS``; adding a format is one
``FORMATS.register`` here (worked example in docs/architecture.md).

- ``alignloop``: ``Comparison.to_json()`` per line (everything, provenance included).
- ``trl``: ``{"prompt", "chosen", "rejected", "margin"}``; plain text, or with ``chat``
  TRL's conversational form (``prompt`` = the chat messages, ``chosen``/``rejected`` = one
  assistant message each).
- ``openrlhf``: plain ``{"prompt", "chosen", "rejected", "margin"}``; with ``chat``
  ``{"chosen", "rejected", "margin"}`` as whole conversations (prompt messages + the
  answer), as OpenRLHF's reward and DPO datasets read them with ``--apply_chat_template``.
- ``hh``: Anthropic HH-RLHF transcripts, ``{"chosen": "\\n\\nHuman: …\\n\\nAssistant: …",
  "rejected": …}``.

Reading also accepts UltraFeedback-binarized rows (``prompt`` as text, ``chosen`` and
``rejected`` as whole conversations ending with the assistant's answer), as published.

``read_pairs`` reads all of them, detecting the format from each line's keys when none is
given; an error names the file, line and field.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alignloop.errors import AlignloopError, InputError
from alignloop.jsonl import read_jsonl, write_jsonl
from alignloop.records import Comparison
from alignloop.registry import Registry

HUMAN, ASSISTANT = "\n\nHuman: ", "\n\nAssistant: "
_TURN = re.compile(r"\n\n(Human|Assistant):[ ]?(.*?)(?=\n\n(?:Human|Assistant):|\Z)", re.S)

RowError = Callable[[str, str], InputError]  # (message, field) → the error located at the row being read


@dataclass(frozen=True)
class PairsFormat:
    """One pairs format.

    ``write(pairs, chat)`` returns one row per pair and refuses (``AlignloopError``) what the format
    would lose or garble; ``chat`` asks for chat messages where the format has a form for them.
    ``read(row, err)`` turns one row into a ``Comparison``, raising ``err(message, field)``.
    ``detect(row)`` says whether a row of unknown format is this format's; formats are tried in
    registration order, so a detector may assume the earlier ones said no.
    """

    name: str
    description: str  # one line, shown in CLI help and on the admin export page
    write: Callable[[list[Comparison], bool], list[dict[str, Any]]]
    read: Callable[[dict[str, Any], RowError], Comparison]
    detect: Callable[[dict[str, Any]], bool]


FORMATS: Registry[PairsFormat] = Registry("pairs format")


def _messages(pair: Comparison) -> list[dict[str, str]]:
    return list(pair.messages) if pair.messages else [{"role": "user", "content": pair.prompt}]


def _answer(text: str) -> list[dict[str, str]]:
    return [{"role": "assistant", "content": text}]


def hh_transcript(messages: list[dict[str, str]], answer: str) -> str:
    """An HH-style transcript; a system message is folded into the first Human turn."""
    out, pending_system = [], ""
    for m in messages:
        if m["role"] == "system":
            pending_system += m["content"] + "\n\n"
        elif m["role"] == "user":
            out.append(HUMAN + pending_system + m["content"])
            pending_system = ""
        else:
            out.append(ASSISTANT + m["content"])
    return "".join(out) + ASSISTANT + answer


def format_rows(pairs: list[Comparison], fmt: str, *, chat: bool = False) -> list[dict[str, Any]]:
    """Rows of ``fmt`` for ``pairs`` (see the module docstring); what a format cannot hold is refused
    instead of dropped."""
    return FORMATS.get(fmt, field="format").write(pairs, chat)


def write_pairs(path: str | Path, pairs: list[Comparison], fmt: str = "alignloop", *, chat: bool = False) -> int:
    """Write ``pairs`` as JSONL in ``fmt``, atomically; returns the number of rows."""
    return write_jsonl(path, format_rows(pairs, fmt, chat=chat))


def detect_format(obj: dict[str, Any]) -> str:
    """The format of one row, from its keys and value types."""
    for fmt in FORMATS.entries():
        if fmt.detect(obj):
            return fmt.name
    raise ValueError("cannot tell the format: expected prompt/chosen/rejected, chat lists or HH transcripts")


def read_pairs(path: str | Path, fmt: str | None = None) -> list[Comparison]:
    """Comparisons from a JSONL pairs file in any supported format (detected when ``fmt`` is None)."""
    if fmt is not None:
        FORMATS.get(fmt, field="format")
    pairs = []
    for line, obj in read_jsonl(path):
        pairs.append(parse_pair(obj, fmt, file=path, line=line))
    if not pairs:
        raise InputError("no pairs in the file", file=path)
    return pairs


def parse_pair(obj: dict[str, Any], fmt: str | None, *, file: str | Path, line: int) -> Comparison:
    """One row of any supported format (detected when ``fmt`` is None) as a ``Comparison``."""
    try:
        kind = fmt or detect_format(obj)
    except ValueError as exc:
        raise InputError(str(exc), file=file, line=line) from None

    def err(message: str, field: str) -> InputError:
        return InputError(message, file=file, line=line, field=field)

    if kind not in FORMATS:
        raise err(f"unknown format {kind!r}", "format")
    return FORMATS[kind].read(obj, err)


# ------------------------------------------------------------------------------------------ writing


def _refuse_lost_turns(pairs: list[Comparison], fmt: str, chat: bool) -> None:
    """A plain-text prompt holds one user turn, so a system message or earlier turns would vanish."""
    if chat:
        return
    lossy = sum(1 for p in pairs if p.messages and not (len(p.messages) == 1 and p.messages[0]["role"] == "user"))
    if lossy:
        raise AlignloopError(
            f"{lossy} of {len(pairs)} pairs have chat prompts (a system message or earlier turns) that the "
            f"plain-text {fmt} format would drop; pass --chat for the conversational form, or use --format "
            "alignloop or hh"
        )


def _refuse_ties(pairs: list[Comparison], fmt: str) -> None:
    """A tied pair (``Comparison.tied``) has no chosen side, and only the alignloop format can say so."""
    tied = sum(1 for p in pairs if p.tied)
    if tied:
        raise AlignloopError(
            f"{tied} of {len(pairs)} pairs are ties, which the {fmt} format would read as preferences; "
            "leave them out or use --format alignloop"
        )


def _plain_rows(pairs: list[Comparison]) -> list[dict[str, Any]]:
    return [{"prompt": p.prompt, "chosen": p.chosen, "rejected": p.rejected, "margin": p.margin} for p in pairs]


def _with_agreement(rows: list[dict[str, Any]], pairs: list[Comparison]) -> list[dict[str, Any]]:
    """TRL and OpenRLHF rows carry the pair's ``agreement`` as an extra column (their trainers ignore
    unknown columns), so a round trip keeps it."""
    return [{**row, "agreement": p.agreement} for row, p in zip(rows, pairs)]


def _write_alignloop(pairs: list[Comparison], chat: bool) -> list[dict[str, Any]]:
    return [p.to_json() for p in pairs]


def _write_trl(pairs: list[Comparison], chat: bool) -> list[dict[str, Any]]:
    _refuse_lost_turns(pairs, "trl", chat)
    _refuse_ties(pairs, "trl")
    if not chat:
        return _with_agreement(_plain_rows(pairs), pairs)
    rows = [
        {"prompt": _messages(p), "chosen": _answer(p.chosen), "rejected": _answer(p.rejected), "margin": p.margin}
        for p in pairs
    ]
    return _with_agreement(rows, pairs)


def _write_openrlhf(pairs: list[Comparison], chat: bool) -> list[dict[str, Any]]:
    _refuse_lost_turns(pairs, "openrlhf", chat)
    _refuse_ties(pairs, "openrlhf")
    if not chat:
        return _with_agreement(_plain_rows(pairs), pairs)
    rows = [
        {
            "chosen": _messages(p) + _answer(p.chosen),
            "rejected": _messages(p) + _answer(p.rejected),
            "margin": p.margin,
        }
        for p in pairs
    ]
    return _with_agreement(rows, pairs)


def _write_hh(pairs: list[Comparison], chat: bool) -> list[dict[str, Any]]:
    """An HH transcript cannot hold its own turn markers: such a pair could not be read back."""
    _refuse_ties(pairs, "hh")
    for i, p in enumerate(pairs, start=1):
        texts = [m["content"] for m in _messages(p)] + [p.chosen, p.rejected]
        if any(marker in text for text in texts for marker in (HUMAN.rstrip(" "), ASSISTANT.rstrip(" "))):
            raise AlignloopError(
                f"pair {i} ({p.prompt[:40]!r}) contains '\\n\\nHuman:' or '\\n\\nAssistant:', which the hh "
                "format uses between turns, so it could not be read back; use --format alignloop, trl or openrlhf"
            )
    return [
        {"chosen": hh_transcript(_messages(p), p.chosen), "rejected": hh_transcript(_messages(p), p.rejected)}
        for p in pairs
    ]


# ------------------------------------------------------------------------------------------ reading


def _margin(obj: dict[str, Any], err: RowError) -> float:
    margin = obj.get("margin", 0.0)
    if margin is None:
        margin = 0.0
    if not isinstance(margin, (int, float)) or isinstance(margin, bool) or margin < 0:
        raise err("expected a number >= 0", "margin")
    return float(margin)


def _agreement(obj: dict[str, Any], err: RowError) -> float | None:
    agreement = obj.get("agreement")
    if agreement is not None and not (
        isinstance(agreement, (int, float)) and not isinstance(agreement, bool) and 0 <= agreement <= 1
    ):
        raise err("expected a number in [0, 1] or null", "agreement")
    return agreement


def _whole_conversations(obj: dict[str, Any], margin: float, err: RowError) -> Comparison:
    """``chosen`` and ``rejected`` as whole conversations that differ only in the final assistant answer."""
    chosen_msgs, rejected_msgs = _chat(obj, "chosen", err), _chat(obj, "rejected", err)
    for field, msgs in (("chosen", chosen_msgs), ("rejected", rejected_msgs)):
        if len(msgs) < 2 or msgs[-1]["role"] != "assistant":
            raise err("expected the conversation to end with an assistant message", field)
    if chosen_msgs[:-1] != rejected_msgs[:-1]:
        raise err("the conversation before the answer differs from chosen's", "rejected")
    return _comparison(chosen_msgs[:-1], chosen_msgs[-1]["content"], rejected_msgs[-1]["content"], margin)


def _conversational_prompt_row(obj: dict[str, Any], margin: float, err: RowError) -> Comparison | None:
    """A ``prompt`` row whose answers or prompt are chat messages; None for a plain-text row.

    UltraFeedback-binarized: ``prompt`` as text, chosen/rejected as whole conversations; TRL's
    conversational form: ``prompt`` as messages, chosen/rejected as text or one assistant message.
    """
    prompt = obj.get("prompt")
    if isinstance(prompt, str) and isinstance(obj.get("chosen"), list) and isinstance(obj.get("rejected"), list):
        return _whole_conversations(obj, margin, err)
    if isinstance(prompt, list):
        messages = _chat(obj, "prompt", err)
        return _comparison(messages, _answer_text(obj, "chosen", err), _answer_text(obj, "rejected", err), margin)
    return None


def _plain_row(obj: dict[str, Any], margin: float, err: RowError) -> Comparison:
    return Comparison(
        prompt=_text(obj, "prompt", err),
        chosen=_text(obj, "chosen", err),
        rejected=_text(obj, "rejected", err),
        margin=margin,
    )


def _read_alignloop(obj: dict[str, Any], err: RowError) -> Comparison:
    margin = _margin(obj, err)
    pair = _conversational_prompt_row(obj, margin, err)
    if pair is None:
        pair = _plain_row(obj, margin, err)
        _fill_alignloop(pair, obj, err)
    return pair


def _read_trl(obj: dict[str, Any], err: RowError) -> Comparison:
    margin = _margin(obj, err)
    pair = _conversational_prompt_row(obj, margin, err) or _plain_row(obj, margin, err)
    pair.agreement = _agreement(obj, err)
    return pair


def _read_openrlhf(obj: dict[str, Any], err: RowError) -> Comparison:
    margin = _margin(obj, err)
    if "prompt" not in obj:
        pair = _whole_conversations(obj, margin, err)
    else:
        pair = _conversational_prompt_row(obj, margin, err) or _plain_row(obj, margin, err)
    pair.agreement = _agreement(obj, err)
    return pair


def _read_hh(obj: dict[str, Any], err: RowError) -> Comparison:
    margin = _margin(obj, err)
    prompt_msgs, chosen = _parse_hh(_text(obj, "chosen", err), "chosen", err)
    rejected_msgs, rejected = _parse_hh(_text(obj, "rejected", err), "rejected", err)
    if rejected_msgs != prompt_msgs:
        raise err("the conversation before the last Assistant turn differs from chosen's", "rejected")
    return _comparison(prompt_msgs, chosen, rejected, margin)


def _fill_alignloop(pair: Comparison, obj: dict[str, Any], err: RowError) -> None:
    messages = obj.get("messages")
    if messages is not None:
        pair.messages = _chat(obj, "messages", err)
    split = obj.get("split", "train")
    if split not in ("train", "test"):
        raise err("expected 'train' or 'test'", "split")
    pair.split = split
    agreement = obj.get("agreement")
    if agreement is not None and not (isinstance(agreement, (int, float)) and 0 <= agreement <= 1):
        raise err("expected a number in [0, 1] or null", "agreement")
    pair.agreement = agreement
    provenance = obj.get("provenance") or {}
    if not isinstance(provenance, dict):
        raise err("expected an object", "provenance")
    pair.provenance = provenance
    group = obj.get("group")
    if group is not None and not isinstance(group, str):
        raise err("expected a string (the labeler group) or null", "group")
    pair.group = group
    tied = obj.get("tied", False)
    if not isinstance(tied, bool):
        raise err("expected true or false", "tied")
    pair.tied = tied


def _comparison(messages: list[dict[str, str]], chosen: str, rejected: str, margin: float) -> Comparison:
    users = [m["content"] for m in messages if m["role"] == "user"]
    single = len(messages) == 1 and messages[0]["role"] == "user"
    return Comparison(
        prompt=users[-1] if users else messages[-1]["content"],
        chosen=chosen,
        rejected=rejected,
        margin=margin,
        messages=None if single else messages,
    )


def _text(obj: dict[str, Any], field: str, err: RowError) -> str:
    value = obj.get(field)
    if value is None:
        raise err("missing field", field)
    if not isinstance(value, str):
        raise err(f"expected a string, got {type(value).__name__}", field)
    if not value.strip():
        raise err("is empty", field)
    return value


def _chat(obj: dict[str, Any], field: str, err: RowError) -> list[dict[str, str]]:
    value = obj.get(field)
    if not isinstance(value, list) or not value:
        raise err("expected a non-empty list of {role, content} messages", field)
    out = []
    for i, m in enumerate(value):
        if (
            not isinstance(m, dict)
            or not isinstance(m.get("content"), str)
            or m.get("role")
            not in (
                "system",
                "user",
                "assistant",
            )
        ):
            raise err(f"message {i} is not {{role: system|user|assistant, content: string}}", field)
        out.append({"role": m["role"], "content": m["content"]})
    return out


def _answer_text(obj: dict[str, Any], field: str, err: RowError) -> str:
    value = obj.get(field)
    if isinstance(value, str):
        return _text(obj, field, err)
    msgs = _chat(obj, field, err)
    if msgs[-1]["role"] != "assistant":
        raise err("expected the last message to be the assistant's answer", field)
    return msgs[-1]["content"]


def _parse_hh(text: str, field: str, err: RowError) -> tuple[list[dict[str, str]], str]:
    """(prompt messages, final answer) from an HH transcript."""
    body = text if text.startswith("\n\n") else "\n\n" + text.lstrip()
    cut = body.rfind(ASSISTANT.rstrip(" "))
    if cut < 0 or not body.startswith(HUMAN.rstrip(" ")):
        raise err("expected an HH transcript: '\\n\\nHuman: …\\n\\nAssistant: …'", field)
    answer = body[cut + len(ASSISTANT.rstrip(" ")) :]
    answer = answer[1:] if answer.startswith(" ") else answer  # the separator's one space, not the answer's own
    messages = []
    rest = body[:cut]
    for role, content in _TURN.findall(rest):
        messages.append({"role": "user" if role == "Human" else "assistant", "content": content})
    if not messages or messages[-1]["role"] != "user":
        raise err("expected a Human turn before the last Assistant turn", field)
    if not answer.strip():
        raise err("the last Assistant turn is empty", field)
    return messages, answer


# Registration order is detection order: alignloop's own keys first, then the most general shape.
FORMATS.register(
    PairsFormat(
        "alignloop",
        "everything, with provenance",
        _write_alignloop,
        _read_alignloop,
        detect=lambda row: "provenance" in row or "split" in row,
    )
)
FORMATS.register(
    PairsFormat(
        "trl",
        "prompt/chosen/rejected/margin; TRL's conversational form with --chat",
        _write_trl,
        _read_trl,
        detect=lambda row: "prompt" in row,
    )
)
FORMATS.register(
    PairsFormat(
        "openrlhf",
        "the same keys; whole conversations with --chat",
        _write_openrlhf,
        _read_openrlhf,
        detect=lambda row: isinstance(row.get("chosen"), list),
    )
)
FORMATS.register(
    PairsFormat(
        "hh",
        "Anthropic HH-RLHF transcripts",
        _write_hh,
        _read_hh,
        detect=lambda row: isinstance(row.get("chosen"), str) and row["chosen"].lstrip().startswith("Human:"),
    )
)
