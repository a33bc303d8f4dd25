"""`alignloop serve` and `alignloop labelers` as real processes (a judgement survives kill -9); the listener."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import pytest
from sqlalchemy import select, text

from alignloop.errors import AlignloopError, InputError
from alignloop.labeling.client import LabelingClient
from alignloop.labeling.server import check_port, run_in_background
from alignloop.project import open_project
from alignloop.store import Judgement

from .helpers import PASSWORD, add_tasks

CLI = [sys.executable, "-m", "alignloop"]  # the checkout under test, not whichever one is installed


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=120)


def _wait_for(port: int, server: subprocess.Popen) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            assert server.poll() is None, server.stderr.read()
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.1)


def test_labelers_commands_add_list_and_deactivate(project_dir):
    from typer.testing import CliRunner

    from alignloop.cli import app
    from alignloop.errors import AlignloopError

    runner = CliRunner()

    def cli(*args: str):
        return runner.invoke(app, [*args, "--project", str(project_dir)])

    added = cli("labelers", "add", "ada", "--url", "http://lab.example:9000")
    assert added.exit_code == 0, added.output
    assert "http://lab.example:9000/invite/" in added.stdout
    assert cli("labelers", "add", "boss", "--admin").exit_code == 0
    listed = cli("labelers", "list").stdout
    assert "ada\tlabeler\tinvited" in listed and "boss\tadmin\tinvited" in listed
    assert cli("labelers", "deactivate", "ada").exit_code == 0
    assert "ada\tlabeler\tdeactivated" in cli("labelers", "list").stdout
    duplicate = cli("labelers", "add", "boss")
    assert isinstance(duplicate.exception, AlignloopError) and "already exists" in str(duplicate.exception)
    missing = cli("labelers", "deactivate", "nobody")
    assert isinstance(missing.exception, AlignloopError) and "no labeler named" in str(missing.exception)


def test_cli_errors_are_one_line_without_a_traceback(project_dir):
    _run("labelers", "add", "boss", "--project", str(project_dir))
    duplicate = _run("labelers", "add", "boss", "--project", str(project_dir))
    assert duplicate.returncode == 1 and "already exists" in duplicate.stderr and "Traceback" not in duplicate.stderr


def test_an_acknowledged_judgement_survives_sigkill_of_the_server(project_dir, free_port):
    add_tasks(project_dir, 3)
    port = free_port
    invite = _run(
        "labelers", "add", "ada", "--project", str(project_dir), "--url", f"http://127.0.0.1:{port}"
    ).stdout.strip()
    server = subprocess.Popen(
        [*CLI, "serve", "--project", str(project_dir), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        _wait_for(port, server)
        with LabelingClient(f"http://127.0.0.1:{port}") as client:
            client.accept_invite(invite, PASSWORD)
            task = client.next_task()
            ids = [c["id"] for c in task["completions"]]
            stored = client.submit_ranking(
                task["assignment_id"], [[i] for i in ids], idempotency_key="before-the-crash"
            )
        server.send_signal(signal.SIGKILL)
        server.wait(timeout=30)
    finally:
        if server.poll() is None:
            server.kill()
    handle = open_project(project_dir)
    with handle.store.session() as s:
        assert s.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        row = s.scalars(select(Judgement).where(Judgement.idempotency_key == "before-the-crash")).one()
    handle.close()
    assert row.id == stored["judgement_id"] and row.ranking == [[i] for i in ids]


def test_serve_refuses_a_directory_without_a_project(tmp_path, free_port):
    result = _run("serve", "--project", str(tmp_path), "--port", str(free_port))
    assert result.returncode == 1 and "alignloop.yaml" in result.stderr


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
        return True
    except OSError:
        return False


async def _ok_app(scope, receive, send):
    """Answers every request "ok", its headers and body in two writes (as Starlette's responses do)."""
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


@pytest.mark.parametrize(
    "host",
    ["127.0.0.1", pytest.param("::1", marks=pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback"))],
)
def test_the_in_process_server_answers_without_waiting_for_delayed_acks(host):
    """A server started in this process (the demo's, the tests') turns Nagle's algorithm off on its
    connections, as uvicorn's own listener does: a response written as headers and then body would
    otherwise wait for the client's delayed ACK (40 ms per request on Linux). IPv6 hosts are served too."""
    import httpx

    server = run_in_background(_ok_app, host=host)
    try:
        assert server.url.startswith("http://[::1]:" if host == "::1" else "http://127.0.0.1:")
        with httpx.Client(base_url=server.url) as client:
            assert client.get("/").text == "ok"  # the connection stays open (keep-alive) for the check
            connections = list(server._server.server_state.connections)
            assert connections
            for protocol in connections:
                sock = protocol.transport.get_extra_info("socket")
                assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    finally:
        server.stop()


def test_a_busy_port_and_a_host_that_does_not_resolve_are_refused_before_serving():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(AlignloopError, match=f"--port {port} on 127.0.0.1 is in use by another program"):
            check_port("127.0.0.1", port)
    with pytest.raises(InputError, match="cannot listen on 'no-such-host.invalid'") as refused:
        check_port("no-such-host.invalid", 8000)
    assert refused.value.field == "--host"
    with pytest.raises(InputError, match="1..65535"):
        check_port("127.0.0.1", 70000)
