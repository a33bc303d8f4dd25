"""Running the model server: ``serve_model`` (the ``alignloop serve-model`` command) and ``start_model_server``
(in-process, for tests and scripts).

One process holds the model, so the server runs one uvicorn worker; the labeling app
(``alignloop serve``) can run beside it on the same project and store. With the policies of
labeler groups (``train-rl --group``) it serves each group's policy beside the pooled one, and a
signed-in user whom the consensus put in a group gets that group's policy (see ``serving.app``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import partial
from pathlib import Path

from alignloop.errors import AlignloopError
from alignloop.labeling.server import RunningServer, run_in_background
from alignloop.models import resolve_policy
from alignloop.project import ProjectHandle, open_project
from alignloop.rounds import group_policies, latest_trained_policy
from alignloop.serving.adapters import LoraAdapter, SharedBase, is_adapter, read_adapter
from alignloop.serving.config import Backend
from alignloop.serving.sampler import ChatSampler, load_sampler


def current_policy(handle: ProjectHandle) -> str:
    """The policy the project would serve now: the newest trained policy a round recorded (what
    ``round next`` samples from), else the current round's policy (the configured model before any training)."""
    trained = latest_trained_policy(handle)
    if trained is not None:
        return trained
    with handle.store.session() as s:
        return handle.current_round(s).policy


def load_project_sampler(
    project_dir: str | Path,
    *,
    model: str | None = None,
    backend: Backend = "auto",
    dtype: str = "auto",
    device: str | None = None,
) -> ChatSampler:
    """The sampler of ``model``, or of the project's current policy."""
    with open_project(project_dir) as handle:
        reference = model or current_policy(handle)
        batch_size = handle.config.generate.batch_size
    return load_sampler(reference, backend=backend, dtype=dtype, device=device, batch_size=batch_size)


def load_group_samplers(
    project_dir: str | Path,
    *,
    main: ChatSampler | None = None,
    backend: Backend = "auto",
    dtype: str = "auto",
    device: str | None = None,
) -> dict[str, ChatSampler]:
    """A sampler for each labeler group whose policy the project records (``train-rl --group``), by group.

    A group's policy that is a LoRA adapter on ``main``'s model takes turns on that one model
    (``serving.adapters``) instead of loading the base weights again; any other is loaded on its own.
    """
    with open_project(project_dir) as handle:
        policies = group_policies(handle)
        batch_size = handle.config.generate.batch_size
    shared: SharedBase | None = None
    samplers = {}
    for group, policy in sorted(policies.items()):
        path = resolve_policy(policy)
        adapter = _adapter_on(main, path)
        if adapter is None:
            if main is not None and main.backend_name == "vllm" and is_adapter(path):
                raise AlignloopError(
                    f"group {group}'s policy {policy} is a LoRA adapter, which the vllm backend does not serve; "
                    "use --backend hf, or train the group's policy with merge_lora"
                )
            samplers[group] = load_sampler(policy, backend=backend, dtype=dtype, device=device, batch_size=batch_size)
            continue
        assert main is not None
        if shared is None:
            shared = SharedBase(main.backend.model)  # type: ignore[attr-defined]
            main.lock, main.prepare = shared.lock, partial(shared.activate, None)
        shared.add(group, adapter)
        samplers[group] = ChatSampler(
            main.backend,
            main.context,
            policy,
            main.backend_name,
            lock=shared.lock,
            prepare=partial(shared.activate, group),
        )
    return samplers


def _adapter_on(main: ChatSampler | None, path: str) -> LoraAdapter | None:
    """The adapter in ``path`` where it is a plain LoRA adapter trained on ``main``'s model (built-in sampler only)."""
    if main is None or main.backend_name != "hf" or not is_adapter(path):
        return None
    adapter = read_adapter(path)
    served = getattr(main.backend.model, "name_or_path", "")  # type: ignore[attr-defined]
    if adapter is None or not adapter.base or not served or not _same_model(adapter.base, served):
        return None
    return adapter


def _same_model(a: str, b: str) -> bool:
    try:
        return Path(resolve_policy(a)).resolve() == Path(resolve_policy(b)).resolve()
    except AlignloopError:
        return False


def labeler_groups(project_dir: str | Path) -> dict[int, str]:
    """Account id → the labeler group the project's latest consensus found them in, read from
    ``<project>/consensus/summary.json`` (written by ``alignloop consensus``); empty without one."""
    path = Path(project_dir) / "consensus" / "summary.json"
    if not path.exists():
        return {}
    summary = json.loads(path.read_text(encoding="utf-8"))
    return {int(i): str(g["group"]) for g in summary.get("labeler_groups") or [] for i in g["labeler_ids"]}


def start_model_server(
    project_dir: str | Path,
    sampler: ChatSampler,
    *,
    name: str | None = None,
    groups: dict[str, ChatSampler] | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
) -> RunningServer:
    """Serve ``sampler`` (and each labeler group's in ``groups``) for the project on ``host:port`` (0 = a free
    port) in a background thread."""
    from alignloop.serving.app import create_app

    app = create_app(project_dir, sampler, name=name, groups=groups, user_groups=labeler_groups(project_dir))
    return run_in_background(app, host, port, name="alignloop-model-server")


def serve_model(
    project_dir: str | Path,
    sampler: ChatSampler,
    *,
    name: str | None = None,
    groups: dict[str, ChatSampler] | None = None,
    host: str = "127.0.0.1",
    port: int = 8001,
    on_ready: Callable[[], None] | None = None,
) -> None:
    """Serve ``sampler`` (and ``groups``) for the project until interrupted (blocks); ``on_ready`` runs once the
    app is built."""
    import uvicorn

    from alignloop.serving.app import create_app

    app = create_app(project_dir, sampler, name=name, groups=groups, user_groups=labeler_groups(project_dir))
    if on_ready is not None:
        on_ready()
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False, timeout_keep_alive=30)
