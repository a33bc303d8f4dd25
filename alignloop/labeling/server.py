"""Running the labeling app: ``serve`` (the ``alignloop serve`` command, its settings ``ServeConfig``) and
``start_server`` (in-process).

uvicorn runs with uvloop and httptools when they are installed. Several workers
share the project's store (SQLite serialises their writes; PostgreSQL is the
choice for many workers on many machines) and its session secret file.
"""

from __future__ import annotations

import errno
import importlib.util
import os
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_core import PydanticCustomError

from alignloop.config import StageConfig
from alignloop.errors import AlignloopError, InputError


class ServeConfig(StageConfig):
    """Where ``alignloop serve`` listens and how many processes answer."""

    host: str = Field("127.0.0.1", description="Address to listen on (0.0.0.0 or :: for every interface).")
    port: int = Field(8000, ge=1, le=65535, description="TCP port to listen on.")
    workers: int = Field(
        1, ge=1, description="Server processes (SQLite serialises their writes; use PostgreSQL for many)."
    )
    root_path: str = Field("", description="Path prefix a reverse proxy serves the app under and strips, e.g. /labels.")

    @field_validator("root_path")
    @classmethod
    def _proxy_prefix(cls, root_path: str) -> str:
        if root_path and (not root_path.startswith("/") or root_path.endswith("/") or "//" in root_path):
            raise PydanticCustomError(
                "root_path",
                "expected a path such as /labels (leading /, no trailing /), got {value}",
                {"value": repr(root_path)},
            )
        return root_path


def _fast_loop() -> Literal["uvloop", "auto"]:
    return "uvloop" if importlib.util.find_spec("uvloop") is not None else "auto"


def _fast_http() -> Literal["httptools", "auto"]:
    return "httptools" if importlib.util.find_spec("httptools") is not None else "auto"


def listening_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` (port 0: a free one), IPv4 or IPv6 as ``host`` resolves.

    The protocol is named, not left 0: asyncio turns Nagle's algorithm off (TCP_NODELAY) only on accepted
    sockets whose proto is IPPROTO_TCP. Without it a response whose headers and body leave in two writes
    waits for the client's delayed ACK, 40 ms on Linux: every labeling request took 45 ms instead of 3.
    Raises ``InputError`` (field ``--host``) for a host that does not resolve, ``OSError`` when the bind fails.
    """
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
        )[0]
    except socket.gaierror as exc:
        raise InputError(f"cannot listen on {host!r}: {exc.strerror}", field="--host") from None
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError:
        sock.close()
        raise
    return sock


def http_url(host: str, port: int) -> str:
    """``http://host:port``, an IPv6 address in brackets."""
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def check_port(host: str, port: int) -> None:
    """Refuse a port out of range or busy here, before uvicorn fails with its own exit status."""
    if not 1 <= port <= 65535:
        raise InputError(f"expected a TCP port in 1..65535, got {port}", field="--port")
    try:
        listening_socket(host, port).close()
    except OSError as exc:
        why = "is in use by another program" if exc.errno == errno.EADDRINUSE else f"cannot be used ({exc.strerror})"
        raise AlignloopError(f"--port {port} on {host} {why}; pick another with --port") from None


def _check_project(project_dir: Path) -> None:
    from alignloop.labeling.auth import load_secret
    from alignloop.project import open_project

    open_project(project_dir).close()  # validates the config and migrates the store once, before any worker starts
    load_secret(project_dir)  # created once, so every worker signs sessions with the same key


def serve(
    project_dir: str | Path = ".",
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: int = 1,
    log_level: str = "warning",
    root_path: str = "",
) -> None:
    """Serve the project's labeling app until interrupted (blocks); ``root_path``: the prefix a reverse proxy
    serves it under, stripped by the proxy (uvicorn's ``root_path``; links and redirects carry it)."""
    import uvicorn

    project_dir = Path(project_dir).resolve()
    if workers < 1:
        raise AlignloopError("--workers must be at least 1")
    _check_project(project_dir)
    os.environ["ALIGNLOOP_PROJECT"] = str(project_dir)
    uvicorn.run(
        "alignloop.labeling.app:app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level=log_level,
        access_log=False,
        timeout_keep_alive=30,
        root_path=root_path,
        loop=_fast_loop(),
        http=_fast_http(),
    )


@dataclass
class RunningServer:
    """A server (labeling app or model server) running in a background thread of this process."""

    url: str
    _server: object
    _thread: threading.Thread

    def stop(self) -> None:
        self._server.should_exit = True  # type: ignore[attr-defined]
        self._thread.join(timeout=10)


def start_server(project_dir: str | Path, host: str = "127.0.0.1", port: int = 0, root_path: str = "") -> RunningServer:
    """Start the app on ``host:port`` (0 = a free port) in a background thread; returns once it accepts connections.
    ``root_path`` as for ``serve``; the returned ``url`` is the server's own, without it."""
    from alignloop.labeling.app import create_app

    return run_in_background(create_app(project_dir), host, port, root_path=root_path, name="alignloop-labeling")


def run_in_background(
    app: object, host: str = "127.0.0.1", port: int = 0, *, root_path: str = "", name: str = "alignloop-server"
) -> RunningServer:
    """Serve an ASGI ``app`` with uvicorn in a background thread of this process (also the model server's
    in-process mode); returns once it accepts connections."""
    import uvicorn

    sock = listening_socket(host, port)
    bound_port = sock.getsockname()[1]
    config = uvicorn.Config(
        app,  # type: ignore[arg-type]
        log_level="warning",
        access_log=False,
        lifespan="on",
        loop=_fast_loop(),
        http=_fast_http(),
        root_path=root_path,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True, name=name)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise AlignloopError(f"the server did not start on {host}:{bound_port}")
        time.sleep(0.02)
    return RunningServer(url=http_url(host, bound_port), _server=server, _thread=thread)
