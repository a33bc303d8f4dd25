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
from pathlib import Path

from alignloop.labeling.server import RunningServer, run_in_background
from alignloop.project import ProjectHandle, open_project
from alignloop.rounds import group_policies, latest_trained_policy
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
    project_dir: str | Path, *, backend: Backend = "auto", dtype: str = "auto", device: str | None = None
) -> dict[str, ChatSampler]:
    """A sampler for each labeler group whose policy the project records (``train-rl --group``), by group."""
    with open_project(project_dir) as handle:
        policies = group_policies(handle)
        batch_size = handle.config.generate.batch_size
    return {
        group: load_sampler(policy, backend=backend, dtype=dtype, device=device, batch_size=batch_size)
        for group, policy in sorted(policies.items())
    }


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
