"""A KV cache allocated once per batch and written in place, for the sampler's decode loop.

transformers' default ``DynamicCache`` grows by ``torch.cat``: every decode step copies every
layer's whole cache (rows × length × kv heads × head dim, keys and values) to append one
position, which moves more bytes than the attention then reads from it. Its ``StaticCache``
writes in place but does not fit this sampler: its layers cannot drop finished rows (no
``batch_select_indices`` in transformers 5.24) and its attention spans the whole capacity at
every step. ``preallocated_cache`` gives layers that allocate room for the prompt and every new
token on their first update, write each step's keys and values into it, and hand attention a
view of the filled part only; dropping rows or copying a prompt's cache to its rows copies the
buffers once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from transformers.cache_utils import Cache, CacheLayerMixin, get_layer_types_and_kwargs

if TYPE_CHECKING:
    import torch
    from transformers import PretrainedConfig


class PreallocatedLayer(CacheLayerMixin):
    """One attention layer's keys and values, (batch, kv heads, capacity, head dim), filled up to ``length``."""

    is_sliding = False

    def __init__(self, capacity: int) -> None:
        super().__init__()
        self.capacity = capacity
        self.length = 0

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        batch, heads, _, key_dim = key_states.shape
        self.device = key_states.device
        self.keys = key_states.new_empty((batch, heads, self.capacity, key_dim))
        self.values = value_states.new_empty((batch, heads, self.capacity, value_states.shape[-1]))
        self.is_initialized = True

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Write the new positions after the filled ones; return keys and values up to them (views)."""
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        end = self.length + key_states.shape[-2]
        if end > self.capacity:
            raise ValueError(f"the KV cache holds {self.capacity} positions; {end} were written")
        self.keys[:, :, self.length : end] = key_states
        self.values[:, :, self.length : end] = value_states
        self.length = end
        return self.keys[:, :, :end], self.values[:, :, :end]

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        return self.length + query_length, 0

    def get_seq_length(self) -> int:
        return self.length

    def get_max_length(self) -> int:
        return self.capacity

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        """Keep only the rows ``indices`` (finished rows leave the batch)."""
        if self.is_initialized:
            self.keys, self.values = self.keys[indices], self.values[indices]


def preallocated_cache(config: PretrainedConfig, capacity: int) -> Cache | None:
    """A cache of ``capacity`` positions per row for ``config``'s model; None where transformers would not give
    every layer a plain full-attention cache (sliding windows, linear attention, shared KV), which keep its own."""
    kinds, _ = get_layer_types_and_kwargs(config.get_text_config(decoder=True))
    if any(kind != "full_attention" for kind in kinds):
        return None
    return Cache(layers=[PreallocatedLayer(capacity) for _ in kinds])
