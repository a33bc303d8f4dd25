"""Load benchmark of the labeling app: N simulated labelers against `alignloop serve` over loopback HTTP.

Each labeler signs in, then loops: take the next task (POST /api/tasks/next), submit a
random ranking (POST /api/tasks/{id}/ranking) with an idempotency key, until it has
done --tasks-per-labeler tasks or its queue is empty. Labelers are asyncio tasks
sharing one event loop, with a minimal keep-alive HTTP/1.1 client, so the load
generator spends as little of the 2 CPU cores as possible on itself.

Afterwards the store is opened directly and every acknowledged submission is looked
up: each must be stored exactly once, and no prompt may have more submitted
judgements than the overlap.

With ``--adversaries N`` the run is made twice on fresh projects: the honest labelers
alone, then with N more signed-in labelers among them who, as fast as the server
answers, send oversize bodies (over ``labeling.max_body_kib``), malformed ones (broken
JSON, a ranking that is not a permutation) and replays (the same body and key again,
the same key with another ranking) around each real submission. The honest labelers'
latencies are reported for both runs; every adversary request must get its 4xx (or
the replay's 200), never a 5xx, and nothing may be lost or stored twice.

    .venv/bin/python bench/labeling_load.py --labelers 50 --tasks-per-labeler 60 [--adversaries 5] [--repeats 3]

The machine is printed first; ``--repeats N`` (default 3) makes every run N times (with
adversaries: alternating with the honest-only run) and reports the median and spread.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import add_repeats, print_machine, ratio_line, spread
from sqlalchemy import func, select


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Connection:
    """One keep-alive HTTP/1.1 connection with a cookie jar of one cookie (enough for this app)."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.cookie: str | None = None
        self.csrf: str | None = None
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(
        self, method: str, path: str, body: dict | None = None, raw: bytes | None = None
    ) -> tuple[int, dict | None]:
        """Send one request (``raw``: these bytes as the JSON body, valid or not); reconnects once if the
        server closed the idle keep-alive connection."""
        for attempt in (0, 1):
            if self.writer is None:
                self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
            payload = raw if raw is not None else (json.dumps(body).encode() if body is not None else b"")
            head = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}", f"Content-Length: {len(payload)}"]
            if body is not None or raw is not None:
                head.append("Content-Type: application/json")
            if self.cookie:
                head.append(f"Cookie: {self.cookie}")
            if self.csrf:
                head.append(f"X-CSRF-Token: {self.csrf}")
            self.writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + payload)
            status_line = await self.reader.readline()
            if status_line:
                break
            self.writer.close()
            self.writer = None
            if attempt:
                raise ConnectionError(f"{method} {path}: the server closed the connection")
        status = int(status_line.split()[1])
        length = 0
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.decode().partition(":")
            name = name.lower()
            if name == "content-length":
                length = int(value.strip())
            elif name == "set-cookie" and value.strip().startswith("alignloop_session="):
                self.cookie = value.strip().split(";", 1)[0]
        data = await self.reader.readexactly(length) if length else b""
        return status, (json.loads(data) if data else None)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.writer = None


async def sign_in(conn: Connection, token: str) -> None:
    status, body = await conn.request("POST", "/api/invite/accept", {"token": token, "password": "benchmark-password"})
    assert status == 200, (status, body)
    conn.csrf = body["csrf_token"]
    status, body = await conn.request("POST", "/api/guidelines/acknowledge", {"version": 1})
    assert status == 200, (status, body)


async def labeler(
    conn: Connection,
    tasks: int,
    rng: random.Random,
    combined: bool,
    acked: list,
    submit_ms: list,
    fetch_ms: list,
    errors: list,
) -> None:
    """One labeler's loop. ``combined``: each submission also takes the next task (``?next=true``)."""
    task: dict | None = None
    for i in range(tasks):
        if task is None:
            start = time.perf_counter()
            status, task = await conn.request("POST", "/api/tasks/next")
            fetch_ms.append((time.perf_counter() - start) * 1000)
            if status == 204:
                return
            if status != 200:
                errors.append((status, task))
                return
        ids = [c["id"] for c in task["completions"]]
        rng.shuffle(ids)
        key = f"{conn.cookie[-12:]}-{i}-{rng.random()}"
        start = time.perf_counter()
        status, body = await conn.request(
            "POST",
            f"/api/tasks/{task['assignment_id']}/ranking" + ("?next=true" if combined else ""),
            {"ranking": [[c] for c in ids], "idempotency_key": key, "seconds_spent": 1.0},
        )
        submit_ms.append((time.perf_counter() - start) * 1000)
        if status != 201:
            errors.append((status, body))
            return
        acked.append((key, body["judgement_id"], task["assignment_id"]))
        task = body["next_task"] if combined else None
        if combined and task is None:
            return


async def adversary(conn: Connection, rng: random.Random, stop: asyncio.Event, acked: list, log: dict) -> None:
    """A labeler sending oversize, malformed and replayed bodies around each real submission, until ``stop``.

    ``log`` counts (what was sent, status answered); a status other than the expected one is a failure.
    """
    expected = {
        "real": 201,
        "oversize": 413,
        "bad json": 422,
        "not a permutation": 422,
        "replay": 200,
        "replay, other body": 409,
    }

    async def send(what: str, path: str, body: dict | None = None, raw: bytes | None = None) -> tuple[int, dict]:
        try:
            status, answer = await conn.request("POST", path, body, raw)
        except (ConnectionError, asyncio.IncompleteReadError):  # the server may hang up on a 413
            conn.close()
            status, answer = -1, None
        log[(what, status)] = log.get((what, status), 0) + 1
        return status, answer or {}

    i = 0
    while not stop.is_set():
        status, task = await conn.request("POST", "/api/tasks/next")
        if status != 200:
            log[("next", status)] = log.get(("next", status), 0) + 1
            return
        path = f"/api/tasks/{task['assignment_id']}/ranking"
        ids = [c["id"] for c in task["completions"]]
        rng.shuffle(ids)
        ranking = [[c] for c in ids]
        await send("oversize", path, raw=json.dumps({"ranking": ranking, "comment": "x" * 300_000}).encode())
        await send("bad json", path, raw=b'{"ranking": [[1], [2]')
        await send("not a permutation", path, {"ranking": [[ids[0]]] * len(ids)})
        key = f"adversary-{conn.cookie[-12:]}-{i}"
        body = {"ranking": ranking, "idempotency_key": key}
        status, answer = await send("real", path, body)
        if status == 201:
            acked.append((key, answer["judgement_id"], task["assignment_id"]))
        for _ in range(3):
            await send("replay", path, body)
        await send("replay, other body", path, {"ranking": ranking[::-1], "idempotency_key": key})
        i += 1
    log["expected"] = expected


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system) used so far by process ``pid`` and its descendants (uvicorn workers)."""
    ticks = os.sysconf("SC_CLK_TCK")
    parents: dict[int, int] = {}
    cpu: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(entry)] = int(fields[1])
        cpu[int(entry)] = (int(fields[11]) + int(fields[12])) / ticks
    tree, frontier = {pid}, [pid]
    while frontier:
        parent = frontier.pop()
        children = [child for child, ppid in parents.items() if ppid == parent and child not in tree]
        tree.update(children)
        frontier.extend(children)
    return sum(cpu.get(p, 0.0) for p in tree)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


async def drive(
    port: int, tokens: list[str], tasks: int, seed: int, server_pid: int, combined: bool, bad_tokens: list[str]
) -> dict:
    conns = [Connection("127.0.0.1", port) for _ in tokens]
    bad_conns = [Connection("127.0.0.1", port) for _ in bad_tokens]
    await asyncio.gather(*(sign_in(c, t) for c, t in zip(conns + bad_conns, tokens + bad_tokens)))
    acked: list = []
    bad_acked: list = []
    submit_ms: list[float] = []
    fetch_ms: list[float] = []
    errors: list = []
    bad_log: dict = {}
    stop = asyncio.Event()
    server_cpu, client_cpu = tree_cpu_seconds(server_pid), time.process_time()
    start = time.perf_counter()
    adversaries = [
        asyncio.ensure_future(adversary(c, random.Random(-seed - i - 1), stop, bad_acked, bad_log))
        for i, c in enumerate(bad_conns)
    ]
    await asyncio.gather(
        *(
            labeler(c, tasks, random.Random(seed + i), combined, acked, submit_ms, fetch_ms, errors)
            for i, c in enumerate(conns)
        )
    )
    elapsed = time.perf_counter() - start
    stop.set()
    await asyncio.gather(*adversaries)
    server_cpu = tree_cpu_seconds(server_pid) - server_cpu
    client_cpu = time.process_time() - client_cpu
    for c in conns + bad_conns:
        c.close()
    return {
        "acked": acked,
        "bad_acked": bad_acked,
        "bad_log": bad_log,
        "submit_ms": submit_ms,
        "fetch_ms": fetch_ms,
        "errors": errors,
        "elapsed": elapsed,
        "server_cpu": server_cpu,
        "client_cpu": client_cpu,
    }


def verify(project_dir: Path, acked: list, overlap: int) -> dict:
    from alignloop.project import open_project
    from alignloop.store import Assignment, Judgement

    handle = open_project(project_dir)
    with handle.store.session() as s:
        stored = {
            key: n
            for key, n in s.execute(select(Judgement.idempotency_key, func.count()).group_by(Judgement.idempotency_key))
        }
        per_assignment = s.execute(
            select(Judgement.assignment_id, func.count()).group_by(Judgement.assignment_id).having(func.count() > 1)
        ).all()
        per_prompt = s.execute(
            select(func.max(func.count()).over())
            .select_from(Assignment)
            .where(Assignment.status == "submitted")
            .group_by(Assignment.round_id, Assignment.prompt_id)
        ).first()
        total = s.scalar(select(func.count()).select_from(Judgement))
    handle.close()
    lost = sum(1 for key, _, _ in acked if stored.get(key, 0) == 0)
    duplicated = sum(1 for key, _, _ in acked if stored.get(key, 0) > 1) + len(per_assignment)
    max_per_prompt = per_prompt[0] if per_prompt else 0
    return {
        "stored": total,
        "lost": lost,
        "duplicated": duplicated,
        "max_judgements_per_prompt": max_per_prompt,
        "overlap": overlap,
    }


def run(args: argparse.Namespace, adversaries: int) -> tuple[dict, dict, int]:
    """One run on a fresh project and server: (drive result, store check, prompts)."""
    from alignloop.labeling.accounts import add_labeler
    from alignloop.labeling.sample_data import add_sample_tasks
    from alignloop.project import init_project

    root = Path(tempfile.mkdtemp(prefix="alignloop-load-"))
    project_dir = root / "proj"
    handle = init_project(project_dir, name="load")
    config_path = project_dir / "alignloop.yaml"
    config_path.write_text(config_path.read_text().replace("overlap: 3", f"overlap: {args.overlap}"))
    n_prompts = -(-args.labelers * args.tasks_per_labeler // args.overlap) + args.labelers
    n_prompts += adversaries * 2 * args.tasks_per_labeler  # the adversaries' real submissions use slots too
    add_sample_tasks(handle.store, handle.project_id, n_prompts=n_prompts, k=args.k)
    tokens = [add_labeler(handle.store, f"labeler{i:03d}") for i in range(args.labelers)]
    bad_tokens = [add_labeler(handle.store, f"adversary{i:03d}") for i in range(adversaries)]
    handle.close()

    port = free_port()
    cli = [str(Path(sys.executable).parent / "alignloop")]
    server = subprocess.Popen(
        [*cli, "serve", "--project", str(project_dir), "--port", str(port), "--workers", str(args.workers)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        start_new_session=True,  # a server runs in its own session, apart from its clients, as deployed
    )
    try:
        deadline = time.time() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if server.poll() is not None or time.time() > deadline:
                    raise SystemExit(f"server did not start: {server.stderr.read().decode()[-2000:]}") from None
                time.sleep(0.2)
        result = asyncio.run(
            drive(port, tokens, args.tasks_per_labeler, args.seed, server.pid, args.combined, bad_tokens)
        )
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
    check = verify(project_dir, result["acked"] + result["bad_acked"], args.overlap)
    if not args.keep:
        import shutil

        shutil.rmtree(root, ignore_errors=True)
    return result, check, n_prompts


def report(args: argparse.Namespace, adversaries: int, result: dict, check: dict, n_prompts: int) -> bool:
    """Print one run's numbers; True when nothing was lost, duplicated or answered unexpectedly."""
    n = len(result["acked"])
    rate = n / result["elapsed"]
    flow = "submit+next in one request" if args.combined else "fetch, then submit"
    print(
        f"labelers={args.labelers} adversaries={adversaries} workers={args.workers} K={args.k} "
        f"overlap={args.overlap} prompts={n_prompts} flow: {flow}"
    )
    print(f"honest acknowledged submissions: {n} in {result['elapsed']:.2f} s = {rate:.0f} submissions/s")
    submit_ms, fetch_ms = result["submit_ms"], result["fetch_ms"]
    print(
        f"honest submit latency p50 {statistics.median(submit_ms):.1f} ms, p99 {percentile(submit_ms, 0.99):.1f} ms; "
        f"fetch latency p50 {statistics.median(fetch_ms):.1f} ms, p99 {percentile(fetch_ms, 0.99):.1f} ms"
    )
    server_ms = result["server_cpu"] * 1000 / max(n, 1)
    print(
        f"CPU: server {server_ms:.2f} ms per honest submission (fetch + submit), "
        f"load generator {result['client_cpu'] * 1000 / max(n, 1):.2f} ms; "
        f"server used {result['server_cpu'] / result['elapsed']:.2f} cores; "
        f"machine load average {os.getloadavg()[0]:.1f}"
    )
    if not adversaries:
        print(f"CPU-bound capacity: {1000 / max(server_ms, 1e-9):.0f} submissions/s per server core")
    surprises = 0
    if adversaries:
        log = dict(result["bad_log"])
        expected = log.pop("expected", {})
        sent = ", ".join(f"{what} → {status}: {count}" for (what, status), count in sorted(log.items()))
        print(f"adversary requests: {sent}; real submissions stored: {len(result['bad_acked'])}")
        surprises = sum(count for (what, status), count in log.items() if what in expected and status != expected[what])
        print(f"adversary requests answered otherwise than expected: {surprises}")
    print(
        f"verified: {check['stored']} stored, {check['lost']} lost, {check['duplicated']} duplicated, "
        f"max judgements per prompt {check['max_judgements_per_prompt']} (overlap {check['overlap']}); "
        f"errors {len(result['errors'])}"
    )
    if result["errors"]:
        print("first errors:", result["errors"][:3])
    return (
        check["lost"] == 0
        and check["duplicated"] == 0
        and check["max_judgements_per_prompt"] <= args.overlap
        and not result["errors"]
        and surprises == 0
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--labelers", type=int, default=50)
    parser.add_argument("--tasks-per-labeler", type=int, default=60)
    parser.add_argument("--overlap", type=int, default=3)
    parser.add_argument("--k", type=int, default=4, help="completions per prompt")
    parser.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", action="store_true", help="keep the temporary project")
    parser.add_argument(
        "--combined", action="store_true", help="each submission also takes the next task (one request per task)"
    )
    parser.add_argument(
        "--adversaries",
        type=int,
        default=0,
        help="also run with this many labelers sending oversize, malformed and replayed bodies, and compare",
    )
    add_repeats(parser)
    args = parser.parse_args()
    print_machine()

    ok = True
    kinds = [0, args.adversaries] if args.adversaries else [0]
    honest: dict[int, list[dict]] = {}  # adversaries -> one result per repeat; the kinds alternate
    for repeat in range(args.repeats):
        for adversaries in kinds:
            print(f"[repeat {repeat + 1}]")
            result, check, n_prompts = run(args, adversaries)
            ok = report(args, adversaries, result, check, n_prompts) and ok
            honest.setdefault(adversaries, []).append(result)
            print()
    for adversaries, results in honest.items():
        rates = [len(r["acked"]) / r["elapsed"] for r in results]
        p99 = [percentile(r["submit_ms"], 0.99) for r in results]
        print(f"{adversaries} adversaries: {spread(rates, ' submissions/s', 0)}; submit p99 {spread(p99, ' ms', 1)}")
    if args.adversaries:
        rate = {a: [len(r["acked"]) / r["elapsed"] for r in rs] for a, rs in honest.items()}
        print(
            ratio_line(
                "honest throughput with / without adversaries",
                [w / wo for w, wo in zip(rate[args.adversaries], rate[0])],
            )
        )
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
