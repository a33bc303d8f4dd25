"""A format or task type registered in one place appears everywhere that lists them.

The CLI, the labeling API and the admin pages read the registries when they are imported,
so the registrations run in a fresh interpreter before anything else is imported, as a
new entry in ``pairs/formats.py`` or ``task_types.py`` would.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from alignloop.pairs.formats import FORMATS
from alignloop.rl.config import ALGORITHMS, RLConfig
from alignloop.task_types import TASK_TYPES, training_task_types

DOCS = Path(__file__).resolve().parents[1] / "docs"

_REGISTER_AND_LOOK = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path

    from alignloop.pairs.formats import FORMATS, PairsFormat
    from alignloop.task_types import TASK_TYPES, Thumbs

    alignloop_format = FORMATS["alignloop"]
    FORMATS.register(
        PairsFormat("scratchfmt", "a format the test registers", alignloop_format.write, alignloop_format.read,
                    detect=lambda row: False)
    )


    class Scratch(Thumbs):
        name = "scratchtask"
        title = "A task type the test registers"
        description = "a task type the test registers"
        answer_field = "scratchanswer"


    TASK_TYPES.register(Scratch())

    from fastapi.testclient import TestClient
    from typer.testing import CliRunner

    from alignloop.cli import app as cli
    from alignloop.labeling.accounts import add_labeler
    from alignloop.labeling.app import create_app
    from alignloop.project import init_project

    runner = CliRunner()
    found = {
        "cli_formats": runner.invoke(cli, ["export-pairs", "--help"]).output,
        "cli_task_types": runner.invoke(cli, ["init", "--help"]).output,
    }
    init_project(Path(sys.argv[1]), task_type="scratchtask").close()
    app = create_app(Path(sys.argv[1]))
    try:
        client = TestClient(app)
        token = add_labeler(app.state.service.store, "boss", admin=True)
        client.post("/api/invite/accept", json={"token": token, "password": "correct horse battery"})
        found["schema"] = json.dumps(client.get("/openapi.json").json())
        found["admin_dashboard"] = client.get("/admin").text
        found["admin_export"] = client.get("/admin/export").text
    finally:
        app.state.service.close()
    print(json.dumps(found))
    """
)


def test_a_registered_format_and_task_type_appear_in_the_cli_help_the_api_schema_and_the_admin_pages(tmp_path):
    env = {**os.environ, "COLUMNS": "400", "TERM": "dumb", "NO_COLOR": "1"}
    done = subprocess.run(
        [sys.executable, "-c", _REGISTER_AND_LOOK, str(tmp_path / "project")],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout.splitlines()[-1])
    assert "scratchfmt" in found["cli_formats"]
    assert "scratchtask" in found["cli_task_types"]
    assert "scratchfmt" in found["schema"]  # the export's `format` parameter
    assert "/api/tasks/{assignment_id}/scratchanswer" in found["schema"]  # the submit endpoint
    assert "ScratchanswerBody" in found["schema"]
    assert 'value="scratchfmt"' in found["admin_export"]
    assert "scratchtask" in found["admin_dashboard"]


def test_every_registered_entry_is_listed_where_users_choose_it():
    assert list(RLConfig.model_fields["algo"].annotation.__args__) == list(ALGORITHMS)
    assert all(name in RLConfig.model_fields for name in ALGORITHMS)  # one config section each
    from alignloop.config import LabelingConfig

    assert list(LabelingConfig.model_fields["task_type"].annotation.__args__) == training_task_types()
    from typer.testing import CliRunner

    from alignloop.cli import app as cli

    help_text = CliRunner().invoke(cli, ["train-rl", "--help"], terminal_width=200).output
    assert [name for name in ALGORITHMS if name.upper() not in help_text] == []


def test_every_registered_entry_is_documented():
    cli, config, labeling = ((DOCS / page).read_text() for page in ("cli.md", "config.md", "labeling.md"))
    assert [name for name in FORMATS if f"`{name}`" not in cli] == []
    assert [name for name in ALGORITHMS if f"`{name}`" not in config] == []
    assert [name for name in TASK_TYPES if f"`{name}`" not in labeling] == []
    answers = {TASK_TYPES[name].answer_field for name in TASK_TYPES}
    assert [a for a in answers if f"`POST /api/tasks/{{id}}/{a}`" not in labeling] == []
