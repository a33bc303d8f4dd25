"""A catalogue of bad input: every command refuses it with exit 1 or 2, one line naming the culprit,
no traceback, and nothing created or changed on disk."""

from __future__ import annotations

import hashlib
import shutil
import socket
import sqlite3
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from alignloop import api
from alignloop.cli import main


@dataclass
class Case:
    args: list[str]  # {tmp}, {project}, {model} are replaced
    names: str  # what the message must name: a file, a flag, a model or a port
    setup: Callable[[Path], object] | None = None  # writes the case's input files into tmp
    exit_codes: tuple[int, ...] = (1, 2)
    extra: dict = field(default_factory=dict)


def _write(name: str, content: str | bytes) -> Callable[[Path], None]:
    def setup(tmp: Path) -> None:
        path = tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode())

    return setup


def _fake_reward_run(tmp: Path) -> None:  # passes the up-front check; never loaded
    (tmp / "rm" / "model").mkdir(parents=True)
    (tmp / "rm" / "model" / "config.json").write_text("{}")
    (tmp / "p.jsonl").write_text('{"prompt": "Hi."}\n')


def _fake_grouped_reward_run(tmp: Path) -> None:  # a reward model with a head for groups 1 and 2; never loaded
    _fake_reward_run(tmp)
    (tmp / "rm" / "model" / "alignloop_reward.json").write_text('{"groups": ["1", "2"]}')


def _busy_port(tmp: Path) -> Iterator[int]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    (tmp / "port").write_text(str(sock.getsockname()[1]))
    return sock


def _broken_config(tmp: Path) -> None:
    config = tmp / "proj" / "alignloop.yaml"
    config.write_text(config.read_text() + "generate:\n  k: [oops\n")


CASES = {
    # prompts files: missing, empty, malformed, not UTF-8, wrong column
    "prompts-missing-file": Case(["prompts", "add", "{tmp}/nope.jsonl", "-p", "{project}"], "nope.jsonl"),
    "prompts-empty-file": Case(
        ["prompts", "add", "{tmp}/e.jsonl", "-p", "{project}"], "e.jsonl", _write("e.jsonl", "")
    ),
    "prompts-blank-text-file": Case(
        ["prompts", "add", "{tmp}/b.txt", "-p", "{project}"], "b.txt", _write("b.txt", "\n \n")
    ),
    "prompts-malformed-jsonl": Case(
        ["prompts", "add", "{tmp}/m.jsonl", "-p", "{project}"],
        "m.jsonl:2",
        _write("m.jsonl", '{"prompt": "a"}\n{oops\n'),
    ),
    "prompts-not-utf8": Case(
        ["prompts", "add", "{tmp}/l.jsonl", "-p", "{project}"],
        "l.jsonl:2",
        _write("l.jsonl", b'{"prompt": "a"}\n\xff\xfe\n'),
    ),
    "prompts-csv-without-column": Case(
        ["prompts", "add", "{tmp}/c.csv", "-p", "{project}"], "c.csv", _write("c.csv", "text\nhello\n")
    ),
    "prompts-neither-file-nor-builtin": Case(["prompts", "add", "-p", "{project}"], "--builtin"),
    "prompts-list-negative-limit": Case(["prompts", "list", "-p", "{project}", "--limit", "-2"], "--limit"),
    "prompts-list-unknown-split": Case(["prompts", "list", "-p", "{project}", "--split", "dev"], "--split"),
    "broken-project-config": Case(["prompts", "list", "-p", "{project}"], "alignloop.yaml:", _broken_config),
    "missing-project": Case(["generate", "-p", "{tmp}/nowhere"], "nowhere"),
    # generate: ranges, types, splits, models
    "generate-k-0": Case(["generate", "-p", "{project}", "-k", "0"], "-k"),
    "generate-k-1-for-rankings": Case(["generate", "-p", "{project}", "-k", "1", "-m", "{model}"], "-k"),
    "generate-k-not-a-number": Case(["generate", "-p", "{project}", "-k", "two"], "-k"),
    "generate-negative-limit": Case(["generate", "-p", "{project}", "--limit", "-1", "-m", "{model}"], "--limit"),
    "generate-unknown-split": Case(["generate", "-p", "{project}", "--split", "dev", "-m", "{model}"], "--split"),
    "generate-zero-temperature": Case(["generate", "-p", "{project}", "--temperature", "0"], "--temperature"),
    "generate-missing-model-dir": Case(["generate", "-p", "{project}", "-m", "{tmp}/no/such/model"], "no/such/model"),
    "generate-missing-hub-id-offline": Case(
        ["generate", "-p", "{project}", "-m", "nobody/no-model"], "nobody/no-model"
    ),
    "generate-bad-model-when-round-is-complete": Case(["generate", "-p", "{project}", "-m", "{tmp}/gone"], "gone"),
    # serve: ports
    "serve-negative-port": Case(["serve", "-p", "{project}", "--port", "-1"], "--port"),
    "serve-port-above-65535": Case(["serve", "-p", "{project}", "--port", "70000"], "--port"),
    "serve-root-path-without-slash": Case(["serve", "-p", "{project}", "--root-path", "labels/"], "--root-path"),
    "serve-busy-port": Case(["serve", "-p", "{project}", "--port", "{port}"], "{port}", _busy_port),
    "serve-zero-workers": Case(["serve", "-p", "{project}", "--workers", "0"], "--workers"),
    # serve-model: ports, backend, dtype, a model that does not exist
    "serve-model-port-above-65535": Case(["serve-model", "-p", "{project}", "--port", "70000"], "--port"),
    "serve-model-busy-port": Case(["serve-model", "-p", "{project}", "--port", "{port}"], "{port}", _busy_port),
    "serve-model-unknown-backend": Case(["serve-model", "-p", "{project}", "--backend", "tgi"], "--backend"),
    "serve-model-unknown-dtype": Case(["serve-model", "-p", "{project}", "--dtype", "int3"], "--dtype"),
    "serve-model-missing-model": Case(["serve-model", "-p", "{project}", "--model", "{tmp}/no-model"], "no-model"),
    # init: databases
    "init-mysql": Case(["init", "{tmp}/new", "--database", "mysql://u@localhost/x"], "mysql"),
    "init-unreachable-postgres": Case(["init", "{tmp}/new", "--database", "postgresql://u@127.0.0.1:1/x"], "127.0.0.1"),
    "init-not-a-url": Case(["init", "{tmp}/new", "--database", "not a url"], "not a url"),
    "init-existing-project": Case(["init", "{project}"], "alignloop.yaml"),
    # pairs and judgements
    "import-pairs-missing": Case(["import-pairs", "{tmp}/none.jsonl", "-p", "{project}"], "none.jsonl"),
    "import-pairs-empty": Case(
        ["import-pairs", "{tmp}/e.jsonl", "-p", "{project}"], "e.jsonl", _write("e.jsonl", "\n")
    ),
    "import-pairs-bad-line": Case(
        ["import-pairs", "{tmp}/x.jsonl", "-p", "{project}"],
        "x.jsonl:1: chosen",
        _write("x.jsonl", '{"prompt": "p", "chosen": 3, "rejected": "r"}\n'),
    ),
    "export-pairs-unknown-format": Case(["export-pairs", "{tmp}/o.jsonl", "-p", "{project}", "-f", "csv"], "--format"),
    "export-pairs-unknown-split": Case(
        ["export-pairs", "{tmp}/o.jsonl", "-p", "{project}", "--split", "dev"], "--split"
    ),
    # other labeling tools
    "import-judgements-ranker-unknown-item": Case(
        ["import-judgements", "{tmp}/ls.json", "-p", "{project}", "--format", "label-studio"],
        "ls.json: task 0: annotations[0].result[0].value.ranker",
        _write(
            "ls.json",
            '[{"data": {"prompt": "p", "answers": ["a", "b"]}, "annotations": [{"completed_by": 1,'
            ' "result": [{"type": "ranker", "value": {"ranker": {"rank": ["0", "7"]}}}]}]}]',
        ),
    ),
    "import-judgements-argilla-missing-field": Case(
        ["import-judgements", "{tmp}/r.jsonl", "-p", "{project}", "-f", "argilla"],
        "r.jsonl:1: task 0: fields.prompt",
        _write("r.jsonl", '{"fields": {"text": "p", "a": "x", "b": "y"}}\n'),
    ),
    "import-judgements-unknown-format": Case(
        ["import-judgements", "{tmp}/x.json", "-p", "{project}", "-f", "prodigy"], "--format"
    ),
    "export-tasks-unknown-format": Case(
        ["export-tasks", "-p", "{project}", "-f", "csv", "--out", "{tmp}/t.json"], "--format"
    ),
    # models, run directories
    "train-reward-missing-pairs": Case(
        ["train-reward", "--pairs", "{tmp}/none.jsonl", "-o", "{tmp}/run"], "none.jsonl"
    ),
    "train-reward-unknown-tracker": Case(
        ["train-reward", "--pairs", "{tmp}/p.jsonl", "-o", "{tmp}/run", "--report-to", "neptune"],
        "--report-to",
        _write("p.jsonl", '{"prompt": "p", "chosen": "a", "rejected": "b"}\n'),
    ),
    "train-dpo-tracker-not-installed": Case(
        ["train-dpo", "--pairs", "{tmp}/p.jsonl", "-o", "{tmp}/run", "--report-to", "mlflow"],
        "pip install mlflow",
        _write("p.jsonl", '{"prompt": "p", "chosen": "a", "rejected": "b"}\n'),
    ),
    "score-missing-reward-model": Case(
        ["score", "-r", "{tmp}/no-rm", "-i", "{tmp}/p.jsonl"],
        "no-rm",
        _write("p.jsonl", '{"prompt": "a", "completion": "b"}\n'),
    ),
    "evaluate-missing-reward-model": Case(
        ["evaluate", "--models", "{model}", "--reward-model", "{tmp}/no-rm", "--prompts", "{tmp}/p.jsonl"],
        "no-rm",
        _write("p.jsonl", '{"prompt": "Hi."}\n'),
    ),
    "evaluate-missing-model": Case(
        ["evaluate", "--models", "{tmp}/no-model", "--reward-model", "{tmp}/rm", "--prompts", "{tmp}/p.jsonl"],
        "no-model",
        _fake_reward_run,
    ),
    "evaluate-group-of-a-pooled-reward-model": Case(
        ["evaluate", "--models", "{model}", "--reward-model", "{tmp}/rm", "--prompts", "{tmp}/p.jsonl", "--group", "1"],
        "not trained per labeler group, so it has no group '1'",
        _fake_reward_run,
    ),
    "train-rl-unknown-group": Case(
        ["train-rl", "--policy", "{model}", "--prompts", "{tmp}/p.jsonl", "--reward-model", "{tmp}/rm", "--group", "3"],
        "(1, 2) and it has no group '3'",
        _fake_grouped_reward_run,
    ),
    "curve-missing-run-dir": Case(["curve", "{tmp}/no-run", "--reward-model", "{tmp}/rm"], "no-run", _fake_reward_run),
}


@pytest.fixture(scope="module")
def template_project(tmp_path_factory: pytest.TempPathFactory, tiny_lm: Path) -> Path:
    """A project with three prompts, each with its two completions of round 0 already sampled."""
    root = tmp_path_factory.mktemp("template")
    api.init(root / "proj").close()
    (root / "p.txt").write_text("Say hi.\nName a colour.\nCount to three.\n")
    api.add_prompts(root / "proj", root / "p.txt")
    api.generate(root / "proj", model=str(tiny_lm), k=2, max_new_tokens=2)
    return root / "proj"


def _state(root: Path) -> dict[str, str]:
    """Every path under ``root`` with a digest of its content; SQLite files by their rows."""
    out = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        if path.name.endswith(("-wal", "-shm", ".writer-lock")) or "__pycache__" in rel:
            continue
        if path.is_dir():
            out[rel] = "dir"
        elif path.suffix == ".db":
            with sqlite3.connect(path) as conn:
                out[rel] = hashlib.sha256("\n".join(conn.iterdump()).encode()).hexdigest()
        else:
            out[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_is_refused_in_one_line_and_changes_nothing(
    name: str,
    template_project: Path,
    tiny_lm: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    case = CASES[name]
    shutil.copytree(template_project, tmp_path / "proj")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hf-cache"))
    held = case.setup(tmp_path) if case.setup else None
    port = (tmp_path / "port").read_text() if (tmp_path / "port").exists() else ""
    subst = {"{tmp}": str(tmp_path), "{project}": str(tmp_path / "proj"), "{model}": str(tiny_lm), "{port}": port}
    args = []
    for arg in case.args:
        for key, value in subst.items():
            arg = arg.replace(key, value)
        args.append(arg)
    names = case.names.replace("{port}", port)
    before = _state(tmp_path)
    capsys.readouterr()
    monkeypatch.setattr(sys, "argv", ["alignloop", *args])
    try:
        with pytest.raises(SystemExit) as exited:
            main()
    finally:
        if isinstance(held, socket.socket):
            held.close()
    err = capsys.readouterr().err
    assert exited.value.code in case.exit_codes, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    assert names in lines[0], lines[0]
    assert _state(tmp_path) == before
