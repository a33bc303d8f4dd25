"""vLLM as a ``GenerationBackend``: the generate stage and the model server on a GPU.

Sampling only: vLLM gives neither the hidden states nor the entropies a ``RolloutBackend`` may be
asked for, so RL rollouts sample through ``HFBackend``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from alignloop.backends import Conversation, SamplingParams, decode_completion, encode_prompts

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from alignloop.records import GeneratedText


class VLLMBackend:
    """vLLM on a GPU: same interface, per-row seeds passed to vLLM's sampler."""

    def __init__(
        self,
        model_path: str,
        tokenizer: PreTrainedTokenizerBase,
        dtype: str = "auto",
        **engine_args: Any,
    ) -> None:
        try:
            from vllm import LLM
        except ImportError as exc:
            from alignloop.errors import AlignloopError

            raise AlignloopError("the vllm backend needs `pip install vllm` on a machine with a GPU") from exc
        self.tokenizer = tokenizer
        self.llm = LLM(model=model_path, dtype=dtype, **engine_args)

    def generate_ids(self, prompt_ids: list[list[int]], params: SamplingParams, seeds: list[int]) -> list[list[int]]:
        from vllm import SamplingParams as VParams
        from vllm.inputs import TokensPrompt

        per_row = [
            VParams(
                temperature=params.temperature,
                top_p=params.top_p,
                max_tokens=params.max_new_tokens,
                seed=int(s),
            )
            for s in seeds
        ]
        outputs = self.llm.generate([TokensPrompt(prompt_token_ids=ids) for ids in prompt_ids], per_row, use_tqdm=False)
        return [list(o.outputs[0].token_ids) for o in outputs]

    def generate(
        self, conversations: list[Conversation], params: SamplingParams, seeds: list[int]
    ) -> list[GeneratedText]:
        prompt_ids = encode_prompts(self.tokenizer, conversations)
        outputs = self.generate_ids(prompt_ids, params, seeds)
        end_ids = {self.tokenizer.eos_token_id}
        return [decode_completion(self.tokenizer, p, o, end_ids) for p, o in zip(prompt_ids, outputs)]
