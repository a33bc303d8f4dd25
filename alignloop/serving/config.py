"""``ServeModelConfig``: the settings of ``alignloop serve-model``, in a light module the CLI reads without the
server's imports. ``Backend`` (the samplers ``serving.sampler`` loads) is declared here once."""

from __future__ import annotations

from typing import Literal, get_args

from pydantic import Field

from alignloop.config import StageConfig

Backend = Literal["auto", "hf", "vllm"]
BACKENDS: tuple[str, ...] = get_args(Backend)


class ServeModelConfig(StageConfig):
    """Which model ``alignloop serve-model`` serves, how it samples, and where it listens."""

    model: str | None = Field(
        None, description="Model to serve: a path, run directory or hub id (default: the project's current policy)."
    )
    served_model_name: str | None = Field(
        None, description="The name clients pass as `model` (default: the model reference)."
    )
    backend: Backend = Field(
        "auto", description="Sampler: auto (vLLM when installed, else the built-in one), hf or vllm."
    )
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="Weights dtype: auto, float32, bfloat16 or float16."
    )
    device: str | None = Field(None, description="Device for the built-in sampler (default: cuda when present).")
    host: str = Field("127.0.0.1", description="Address to listen on (0.0.0.0 or :: for every interface).")
    port: int = Field(8001, ge=1, le=65535, description="TCP port to listen on.")
    groups: bool = Field(
        True,
        description="Also serve each labeler group's policy (train-rl --group), answering the group's members with it.",
    )
