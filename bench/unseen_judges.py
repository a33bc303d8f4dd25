"""Judges of kinds the project's code was never tuned on, to check that the loop aligns to a taste it has not seen.

Use as ``--judge bench/unseen_judges.py:plain_language``. Scores lie in [-1, 1], like the built-in judges, except
``no_repetition``, which keeps its own small scale.
"""

from __future__ import annotations

import functools
import re
from typing import Any

_WORD = re.compile(r"[A-Za-z]+(?:'[a-z]+)?")
_SENTENCE_END = re.compile(r"[.!?]+(?:\s|$)")
_VOWEL_GROUP = re.compile(r"[aeiouy]+")


def syllables(word: str) -> int:
    """Vowel groups in the word, less a silent final e: the usual estimate, right for most English words."""
    w = word.lower()
    count = len(_VOWEL_GROUP.findall(w))
    if w.endswith("e") and not w.endswith(("le", "ee")) and count > 1:
        count -= 1
    return max(count, 1)


def plain_language(prompt: str, completion: str) -> float:
    """Plain language: Flesch reading ease of the answer (short sentences of short words read easily),
    mapped from its usual 0-100 range so that 60 (plain English) scores 0 and 100 scores 1."""
    words = _WORD.findall(completion)
    if not words:
        return -1.0
    sentences = max(len(_SENTENCE_END.findall(completion.strip() + " ")), 1)
    ease = 206.835 - 1.015 * len(words) / sentences - 84.6 * sum(syllables(w) for w in words) / len(words)
    return max(-1.0, min(1.0, (ease - 60.0) / 40.0))


_STOPWORDS = frozenset(
    "about above after again also because been before being between both could does doing during each from have "
    "having here into just like more most much only other over same should some such than that their them then "
    "there these they this those through under very what when where which while will with would your yours".split()
)


def _content_stems(text: str) -> set[str]:
    """Words of four letters or more that carry meaning, cut to five letters so inflections match."""
    words = (w.lower() for w in _WORD.findall(text))
    return {w[:5] for w in words if len(w) >= 4 and w not in _STOPWORDS}


def on_topic(prompt: str, completion: str) -> float:
    """Staying on topic: the share of the prompt's content words the answer takes up, from -1 (none) to 1 (all).
    A prompt without content words scores every answer 0."""
    asked = _content_stems(prompt)
    if not asked:
        return 0.0
    return 2.0 * len(asked & _content_stems(completion)) / len(asked) - 1.0


def no_repetition(prompt: str, completion: str) -> float:
    """Not repeating oneself: the share of the answer's words that are distinct, in [0, 1]; an answer of fewer
    than eight words says too little to judge and scores 0. Left on its own scale (a prompt's answers differ by
    a few hundredths), unlike the others, to check that nothing in the loop depends on a judge's units."""
    words = [w.lower() for w in _WORD.findall(completion)]
    if len(words) < 8:
        return 0.0
    return len(set(words)) / len(words)


_LIST_MARKER = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s*", re.MULTILINE)
_SENTENCE = re.compile(r"[^.!?\n]+(?:[.!?]+|$)")
_CONCRETE = re.compile(
    r"\d|\b(?:two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|fifteen|twenty|thirty|forty|fifty|"
    r"hundred|thousand|dozen|half|twice|for example|for instance|such as|e\.g)\b",
    re.IGNORECASE,
)


def specific(prompt: str, completion: str) -> float:
    """Concrete answers: the share of the answer's sentences that give a number (a list's numbering aside) or an
    example, from -1 (none) to 1 (every one); a fragment of fewer than three words is not a sentence. A sparse
    taste: SmolLM2's answers score -0.83 on average and the judge ties three pairs of a prompt's answers in four."""
    text = _LIST_MARKER.sub("", completion)
    sentences = [s for s in _SENTENCE.findall(text) if len(_WORD.findall(s)) >= 3]
    if not sentences:
        return -1.0
    return 2.0 * sum(bool(_CONCRETE.search(s)) for s in sentences) / len(sentences) - 1.0


_HEDGE = re.compile(
    r"\b(?:might|may|maybe|perhaps|possibly|probably|likely|unlikely|seems?|seemingly|apparently|somewhat|"
    r"generally|typically|usually|often|sometimes|arguably|I think|I believe|I guess|I'm not sure|not sure|"
    r"it depends|depending on|kind of|sort of|can vary|may vary|I'm sorry|I apologi[sz]e|as an AI|"
    r"I can't|I cannot|I am unable|I'm unable|consult a)\b",
    re.IGNORECASE,
)


def confident(prompt: str, completion: str) -> float:
    """Confident answers: the share of the answer's sentences free of hedges ("might", "perhaps", "usually",
    "it depends", "I think") and of disclaimers ("I'm sorry", "as an AI", "consult a"), from -1 (every sentence
    hedges) to 1 (none does); a fragment of fewer than three words is not a sentence, and an answer without a
    sentence scores -1. A taste about tone that no other judge here reads, written before any run on it. Sparse
    and near its top: SmolLM2's answers average +0.86 on it, and it ties 77 % of the pairs of a prompt's answers."""
    sentences = [s for s in _SENTENCE.findall(_LIST_MARKER.sub("", completion)) if len(_WORD.findall(s)) >= 3]
    if not sentences:
        return -1.0
    return 1.0 - 2.0 * sum(bool(_HEDGE.search(s)) for s in sentences) / len(sentences)


_PLEASANTRY = re.compile(
    r"^\W*(?:sure|certainly|absolutely|of course|great|good|excellent|what a|thank|thanks|hello|hi|hey|"
    r"i'm glad|i am glad|i'd be happy|i would be happy|i'd love|i'm happy|happy to|here is|here's|here are|"
    r"let me|okay|ok|yes|no problem|wow)\b",
    re.IGNORECASE,
)


def direct(prompt: str, completion: str) -> float:
    """Answers that get to the point: the first sentence opens without a pleasantry ("Sure!", "Great question",
    "I'm glad to help", "Here's") and takes up the question (shares a content word with the prompt). Half a point
    for each, so an answer scores -1, 0 or 1, and one without a sentence -1. A taste about where an answer starts,
    which no other judge here reads, written before any run on it."""
    sentences = [s for s in _SENTENCE.findall(_LIST_MARKER.sub("", completion)) if len(_WORD.findall(s)) >= 3]
    if not sentences:
        return -1.0
    first = sentences[0]
    plain_start = not _PLEASANTRY.search(first)
    on_point = bool(_content_stems(first) & _content_stems(prompt))
    return (1.0 if plain_start else -1.0) * 0.5 + (1.0 if on_point else -1.0) * 0.5


_HELPFUL_QUESTION = (
    "Here is a question and an answer.\n\nQuestion: {prompt}\n\nAnswer: {completion}\n\n"
    "Is this a helpful, well-written answer to the question? Reply Yes or No."
)


@functools.cache
def _judge_model() -> tuple[Any, Any, list[int], list[int]]:
    """SmolLM2-135M-Instruct as shipped (the demo's starting policy), in the precision `auto` picks for sampling,
    and the ids of its Yes and No tokens."""
    from alignloop.models import default_policy_path, load_policy

    model, tokenizer = load_policy(str(default_policy_path()), dtype="auto", purpose="sampling")
    model.eval()

    def first_ids(words: list[str]) -> list[int]:
        return [tokenizer.encode(word, add_special_tokens=False)[0] for word in words]

    return model, tokenizer, first_ids(["Yes", "yes", " Yes"]), first_ids(["No", "no", " No"])


@functools.lru_cache(maxsize=65536)
def llm_helpful(prompt: str, completion: str) -> float:
    """An LLM as judge: the shipped SmolLM2-135M-Instruct asked whether the answer is helpful and well written,
    scored 2·P(Yes | Yes or No) − 1 from its next-token distribution, in [-1, 1]. A neural taste of no rule a
    person could write down (it correlates at most 0.3 with any other judge here on the demo's first answers),
    the kind of gold model Gao et al. measured over-optimisation against; about 0.2 s a call on a 2-core CPU."""
    import torch

    model, tokenizer, yes, no = _judge_model()
    messages = [{"role": "user", "content": _HELPFUL_QUESTION.format(prompt=prompt, completion=completion)}]
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    ids = tokenizer(text, return_tensors="pt", add_special_tokens=False).input_ids
    with torch.inference_mode():
        logprobs = torch.log_softmax(model(ids, logits_to_keep=1).logits[0, -1].float(), dim=-1)
    margin = torch.logsumexp(logprobs[yes], dim=0) - torch.logsumexp(logprobs[no], dim=0)
    return float(torch.tanh(margin / 2))
