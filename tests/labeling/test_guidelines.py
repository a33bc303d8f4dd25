"""Guidelines: a default version 1, reading before labeling, versioned edits recorded on judgements."""

from __future__ import annotations

from sqlalchemy import select

from alignloop.labeling.guidelines import default_sections, render_markdown
from alignloop.store import Judgement

from .helpers import new_client, rank, take

SECTIONS = {
    "task": "Judge **harmlessness**.",
    "instructions": "1. Read everything.\n2. Rank.",
    "edge_cases": "- Refusals: prefer polite ones.",
    "unusable": "Flag PII.",
}


def test_a_default_version_1_is_written_for_the_projects_criterion(app):
    client = new_client(app, "ada", read_guidelines=False)
    body = client.get("/api/guidelines").json()
    assert body["version"] == 1
    assert "helpfulness" in body["task"]
    assert set(body["html"]) == {"task", "instructions", "edge_cases", "unusable"}
    assert all(body[name].strip() for name in ("task", "instructions", "edge_cases", "unusable"))
    assert "harmlessness" in default_sections("harmlessness")["task"]


def test_labelers_must_read_the_guidelines_before_their_first_task(app):
    client = new_client(app, "ada", read_guidelines=False)
    refused = client.post("/api/tasks/next")
    assert refused.status_code == 409 and "read the guidelines" in refused.json()["detail"]
    page = client.get("/task", follow_redirects=False)
    assert page.status_code == 303 and page.headers["location"] == "/guidelines"
    assert client.post("/api/guidelines/acknowledge", json={"version": 1}).status_code == 200
    assert client.post("/api/tasks/next").status_code == 200


def test_acknowledging_an_old_version_is_refused(app):
    admin = new_client(app, "boss", admin=True)
    assert admin.post("/api/admin/guidelines", json=SECTIONS).status_code == 201
    client = new_client(app, "ada", read_guidelines=False)
    response = client.post("/api/guidelines/acknowledge", json={"version": 1})
    assert response.status_code == 409 and "version 2" in response.json()["detail"]


def test_editing_creates_a_new_version_that_labelers_must_read_again(app):
    admin = new_client(app, "boss", admin=True)
    labeler = new_client(app, "ada")
    first = take(labeler)
    assert rank(labeler, first).status_code == 201
    created = admin.post("/api/admin/guidelines", json=SECTIONS)
    assert created.status_code == 201 and created.json()["version"] == 2 and created.json()["author"] == "boss"
    history = admin.get("/api/admin/guidelines").json()
    assert [g["version"] for g in history] == [2, 1]
    assert history[1]["task"] != SECTIONS["task"]  # version 1 is unchanged
    refused = labeler.post("/api/tasks/next")
    assert refused.status_code == 409 and "changed" in refused.json()["detail"]
    assert labeler.post("/api/guidelines/acknowledge", json={"version": 2}).status_code == 200
    second = take(labeler)
    assert second["guideline_version"] == 2
    assert rank(labeler, second).status_code == 201
    with app.state.service.db.read() as s:
        versions = [j.guideline_version_id for j in s.scalars(select(Judgement).order_by(Judgement.id))]
    assert versions == [history[1]["id"], history[0]["id"]]


def test_a_version_with_an_empty_section_is_refused(app):
    admin = new_client(app, "boss", admin=True)
    response = admin.post("/api/admin/guidelines", json={**SECTIONS, "edge_cases": "  "})
    assert response.status_code == 422 and "edge_cases" in response.json()["detail"]
    assert len(admin.get("/api/admin/guidelines").json()) == 1


def test_guideline_markdown_cannot_inject_html(app):
    html = render_markdown("**bold** <script>alert(1)</script>")
    assert "<strong>bold</strong>" in html and "<script>" not in html


def test_the_guidelines_are_shown_beside_every_task(app):
    client = new_client(app, "ada")
    page = client.get("/task")
    assert page.status_code == 200
    assert 'id="guidelines-panel"' in page.text and "Edge cases" in page.text and "Unusable answers" in page.text


def test_guideline_links_keep_only_safe_schemes() -> None:
    from alignloop.labeling.guidelines import render_markdown

    out = render_markdown(
        "[a](javascript:alert(1)) [b](JaVaScRiPt:x) [c](data:text/html,x) ![d](data:image/png;base64,x) "
        "[e](https://example.org/x) [f](/guidelines) [g](mailto:a@b.c) [h](&#106;avascript:y)"
    )
    assert "javascript" not in out.lower() and "data:" not in out
    assert 'href="https://example.org/x"' in out and 'href="/guidelines"' in out and "mailto:a@b.c" in out


def test_a_password_of_spaces_is_refused(app) -> None:
    from fastapi.testclient import TestClient

    from alignloop.labeling.accounts import add_labeler

    token = add_labeler(app.state.service.store, "sam")
    response = TestClient(app).post("/api/invite/accept", json={"token": token, "password": " " * 8})
    assert response.status_code == 422
