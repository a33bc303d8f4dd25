"""The model behind ``serve-model``: a policy loaded once, answering chats through a generation backend.

vLLM when it is installed (or asked for), otherwise the built-in batched sampler
(``backends.HFBackend``). The n answers of one request are sampled as one batch of the same
prompt (prefilled once), each row from its own seed, so a request with a ``seed`` gets the same
answers every time. One request samples at a time: the model is shared.
"""

from __future__ import annotations

import hashlib
import importlib.util
import secrets
import threading
from collections.abc import Callable

from alignloop.backends import GenerationBackend, SamplingParams, decode_completion, encode_prompts
from alignloop.errors import AlignloopError
from alignloop.records import GeneratedText
from alignloop.serving.config import BACKENDS, Backend


class PromptTooLong(AlignloopError):
    """The prompt and ``max_tokens`` do not fit in the model's context."""


def answer_seeds(seed: int | None, n: int) -> list[int]:
    """One 31-bit seed per answer: derived from the request's ``seed``, or random without one."""
    if seed is None:
        return [secrets.randbits(31) for _ in range(n)]
    return [int.from_bytes(hashlib.sha256(f"{seed}:{i}".encode()).digest()[:4], "big") & 0x7FFFFFFF for i in range(n)]


class ChatSampler:
    """A loaded policy that answers conversations. ``version`` is the reference it was loaded from.

    Samplers that share one model (a group's adapter on the main policy, ``serving.adapters``) share
    ``lock``, and ``prepare`` puts the model in this sampler's state before each answer."""

    def __init__(
        self,
        backend: GenerationBackend,
        context: int | None,
        version: str,
        backend_name: str,
        *,
        lock: threading.Lock | None = None,
        prepare: Callable[[], None] | None = None,
    ) -> None:
        self.backend = backend
        self.context = context  # tokens the model attends to (prompt + answer), None when unknown
        self.version = version
        self.backend_name = backend_name
        self.lock = lock or threading.Lock()
        self.prepare = prepare

    def prompt_tokens(self, messages: list[dict[str, str]]) -> list[int]:
        """The prompt's token ids: the chat template with the assistant's generation prompt."""
        return encode_prompts(self.backend.tokenizer, [messages])[0]

    def answer(
        self, messages: list[dict[str, str]], n: int, params: SamplingParams, seeds: list[int]
    ) -> list[GeneratedText]:
        """``n`` answers to the conversation; ``PromptTooLong`` when it does not fit the context."""
        prompt = self.prompt_tokens(messages)
        if self.context is not None and len(prompt) + params.max_new_tokens > self.context:
            raise PromptTooLong(
                f"the prompt is {len(prompt)} tokens; with max_tokens={params.max_new_tokens} it exceeds the "
                f"model's context of {self.context} tokens"
            )
        with self.lock:
            if self.prepare is not None:
                self.prepare()
            outputs = self.backend.generate_ids([prompt] * n, params, seeds)
        end_ids = getattr(self.backend, "end_ids", None) or {self.backend.tokenizer.eos_token_id}
        return [decode_completion(self.backend.tokenizer, prompt, ids, end_ids) for ids in outputs]


def load_sampler(
    model: str, *, backend: Backend = "auto", dtype: str = "auto", device: str | None = None, batch_size: int = 16
) -> ChatSampler:
    """Load ``model`` (a path, run directory, hub id or ``default``) behind the chosen backend.

    ``auto`` takes vLLM when it can be imported and the built-in sampler otherwise.
    """
    from alignloop.backends import HFBackend
    from alignloop.models import load_policy, load_tokenizer, pick_device, resolve_policy
    from alignloop.vllm_backend import VLLMBackend

    if backend not in BACKENDS:
        raise AlignloopError(f"unknown backend {backend!r} (choose from {', '.join(BACKENDS)})")
    path = resolve_policy(model)
    use_vllm = backend == "vllm" or (backend == "auto" and importlib.util.find_spec("vllm") is not None)
    if use_vllm:
        from transformers import AutoConfig

        context = getattr(AutoConfig.from_pretrained(path), "max_position_embeddings", None)
        return ChatSampler(VLLMBackend(path, load_tokenizer(path), dtype=dtype), context, model, "vllm")
    policy, tokenizer = load_policy(path, device=str(pick_device(device)), dtype=dtype, purpose="sampling")
    context = getattr(policy.config, "max_position_embeddings", None)
    return ChatSampler(HFBackend(policy, tokenizer, batch_size=batch_size), context, model, "hf")
