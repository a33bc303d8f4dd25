"""The admin dashboard: progress, labelers, guideline editor, exports, quality, OpenAPI."""

from __future__ import annotations

import json

from fastapi.testclient import TestClient

from .helpers import PASSWORD, new_client, rank, take


def _csrf(page_text: str) -> str:
    return page_text.split('name="csrf_token" value="')[1].split('"')[0]


def test_progress_counts_done_skipped_and_median_seconds(app):
    admin = new_client(app, "boss", admin=True)
    ada, bob = new_client(app, "ada"), new_client(app, "bob")
    for seconds in (10.0, 30.0, 20.0):
        assert rank(ada, take(ada), seconds_spent=seconds).status_code == 201
    task = take(bob)
    assert bob.post(f"/api/tasks/{task['assignment_id']}/skip", json={"reason": "unsure"}).status_code == 201
    take(bob)  # in progress
    progress = admin.get("/api/admin/progress").json()
    assert progress["judgements_needed"] == 6 * 3
    assert (progress["done"], progress["skipped"], progress["in_progress"]) == (3, 1, 1)
    assert progress["rounds"][0]["prompts"] == 6
    by_name = {row["name"]: row for row in progress["labelers"]}
    assert by_name["ada"]["done"] == 3 and by_name["ada"]["median_seconds"] == 20.0
    assert by_name["bob"]["skipped"] == 1 and by_name["bob"]["in_progress"] == 1
    page = admin.get("/admin")
    assert page.status_code == 200 and "3 of 18 judgements done" in page.text


def test_admin_invites_through_the_api_and_the_link_works(app):
    admin = new_client(app, "boss", admin=True)
    created = admin.post("/api/admin/labelers", json={"name": "newbie"})
    assert created.status_code == 201
    link = created.json()["invite_url"]
    assert link.startswith("http://testserver/invite/")
    page = TestClient(app).get(link.replace("http://testserver", ""))
    assert page.status_code == 200 and "Choose a password" in page.text
    accepted = TestClient(app).post("/api/invite/accept", json={"token": link, "password": PASSWORD})
    assert accepted.status_code == 200 and accepted.json()["role"] == "labeler"
    names = [row["name"] for row in admin.get("/api/admin/labelers").json()]
    assert names == ["boss", "newbie"]


def test_invite_page_form_sets_the_password_and_leads_to_the_guidelines(app):
    admin = new_client(app, "boss", admin=True)
    link = admin.post("/api/admin/labelers", json={"name": "newbie"}).json()["invite_url"]
    browser = TestClient(app)
    path = link.replace("http://testserver", "")
    token = _csrf(browser.get(path).text)
    mismatch = browser.post(path, data={"password": PASSWORD, "password_again": "different!", "csrf_token": token})
    assert mismatch.status_code == 422 and "differ" in mismatch.text
    done = browser.post(
        path, data={"password": PASSWORD, "password_again": PASSWORD, "csrf_token": token}, follow_redirects=False
    )
    assert done.status_code == 303 and done.headers["location"] == "/guidelines"
    assert browser.get("/api/me").json()["name"] == "newbie"


def test_admin_pages_invite_deactivate_and_reinvite(app):
    admin = new_client(app, "boss", admin=True)
    ada = new_client(app, "ada")
    page = admin.get("/admin/labelers")
    token = _csrf(page.text)
    invited = admin.post("/admin/labelers", data={"name": "carol", "role": "labeler", "csrf_token": token})
    assert invited.status_code == 200 and "/invite/" in invited.text and "carol" in invited.text
    no_token = admin.post("/admin/labelers/deactivate", data={"name": "ada"})
    assert no_token.status_code == 403 and ada.get("/api/me").status_code == 200
    assert admin.post("/admin/labelers/deactivate", data={"name": "ada", "csrf_token": token}).status_code == 200
    assert ada.get("/api/me").status_code == 401
    relinked = admin.post("/admin/labelers/reinvite", data={"name": "ada", "csrf_token": token})
    assert relinked.status_code == 200 and "/invite/" in relinked.text
    own = admin.post("/admin/labelers/deactivate", data={"name": "boss", "csrf_token": token})
    assert own.status_code == 422


def test_deactivate_through_the_api(app):
    admin = new_client(app, "boss", admin=True)
    ada = new_client(app, "ada")
    assert admin.post("/api/admin/labelers/ada/deactivate").status_code == 200
    assert ada.post("/api/tasks/next").status_code == 401
    missing = admin.post("/api/admin/labelers/nobody/deactivate")
    assert missing.status_code == 422 and "no labeler named" in missing.json()["detail"]


def test_guideline_editor_publishes_a_version_and_shows_history(app):
    admin = new_client(app, "boss", admin=True)
    page = admin.get("/admin/guidelines")
    assert page.status_code == 200 and "Publish as version 2" in page.text
    sections = {
        "task": "Judge honesty.",
        "instructions": "Check facts.",
        "edge_cases": "Jokes are fine.",
        "unusable": "Flag PII.",
    }
    published = admin.post("/admin/guidelines", data={**sections, "csrf_token": _csrf(page.text)})
    assert published.status_code == 200 and "Version 2" in published.text and "Publish as version 3" in published.text
    empty = admin.post("/admin/guidelines", data={**sections, "task": "", "csrf_token": _csrf(page.text)})
    assert empty.status_code == 422 and "Jokes are fine." in empty.text  # what the admin typed is kept
    assert admin.get("/api/guidelines").json()["task"] == "Judge honesty."


def test_raw_judgements_export_is_jsonl_with_display_order_and_guideline_version(app):
    admin = new_client(app, "boss", admin=True)
    ada = new_client(app, "ada")
    task = take(ada)
    assert rank(ada, task, comment="fine").status_code == 201
    response = admin.get("/api/admin/export/judgements")
    assert response.status_code == 200 and response.headers["content-type"].startswith("application/x-ndjson")
    rows = [json.loads(line) for line in response.text.splitlines()]
    assert len(rows) == 1
    row = rows[0]
    assert row["labeler"] == "ada" and row["display_order"] == [c["id"] for c in task["completions"]]
    assert row["guideline_version"] == 1 and row["comment"] == "fine" and row["kind"] == "ranking"


def test_the_admin_api_and_the_cli_export_judgements_in_one_shape(app, project_dir, tmp_path):
    from alignloop import api

    admin = new_client(app, "boss", admin=True)
    ada = new_client(app, "ada")
    assert rank(ada, take(ada), comment="fine").status_code == 201
    task = take(ada)
    assert ada.post(f"/api/tasks/{task['assignment_id']}/skip", json={"reason": "unsure"}).status_code == 201
    over_http = [json.loads(line) for line in admin.get("/api/admin/export/judgements").text.splitlines()]
    api.export_judgements(project_dir, tmp_path / "judgements.jsonl")
    from_cli = [json.loads(line) for line in (tmp_path / "judgements.jsonl").read_text().splitlines()]
    assert len(over_http) == 2 and over_http == from_cli


def test_pairs_export_calls_the_pairs_stage(app):
    admin = new_client(app, "boss", admin=True)
    labelers = [new_client(app, f"l{i}") for i in range(3)]
    for client in labelers:
        assert rank(client, take(client)).status_code == 201
    response = admin.get("/api/admin/export/pairs", params={"format": "trl"})
    assert response.status_code == 200, response.text
    rows = [json.loads(line) for line in response.text.splitlines()]
    assert rows and all({"prompt", "chosen", "rejected"} <= set(row) for row in rows)
    assert "Download pairs" in admin.get("/admin/export").text


def test_quality_view_uses_the_consensus_report(app):
    admin = new_client(app, "boss", admin=True)
    labelers = [new_client(app, f"l{i}") for i in range(3)]
    for _ in range(2):
        for client in labelers:
            assert rank(client, take(client)).status_code == 201
    quality = admin.get("/api/admin/quality").json()
    assert quality["available"] is True
    assert {row["name"] for row in quality["labelers"]} >= {"l0", "l1", "l2"}
    page = admin.get("/admin")
    assert "Agreement and labeler quality" in page.text and 'src="data:image/png;base64,' in page.text


def test_quality_view_with_a_single_labeler_reports_undefined_agreement_as_null(app):
    admin = new_client(app, "boss", admin=True)
    only = new_client(app, "solo")
    assert rank(only, take(only)).status_code == 201
    response = admin.get("/api/admin/quality")
    assert response.status_code == 200, response.text
    quality = response.json()
    assert quality["available"] is True and quality["krippendorff_alpha"] is None
    assert admin.get("/admin").status_code == 200


def test_openapi_schema_lists_every_api_endpoint(app):
    schema = TestClient(app).get("/openapi.json").json()
    paths = set(schema["paths"])
    expected = {
        "/api/login",
        "/api/invite/accept",
        "/api/logout",
        "/api/me",
        "/api/guidelines",
        "/api/guidelines/acknowledge",
        "/api/tasks/next",
        "/api/tasks/{assignment_id}/ranking",
        "/api/tasks/{assignment_id}/thumbs",
        "/api/tasks/{assignment_id}/skip",
        "/api/judgements/mine",
        "/api/admin/progress",
        "/api/admin/labelers",
        "/api/admin/labelers/{name}/deactivate",
        "/api/admin/labelers/{name}/reinvite",
        "/api/admin/labelers/{name}/reactivate",
        "/api/admin/guidelines",
        "/api/admin/export/judgements",
        "/api/admin/export/pairs",
        "/api/admin/quality",
    }
    assert expected <= paths
    assert not any(not p.startswith("/api/") for p in paths)


def test_pages_send_security_headers(app):
    response = TestClient(app).get("/login")
    assert response.headers["x-frame-options"] == "DENY"
    assert "script-src 'self'" in response.headers["content-security-policy"]
    assert TestClient(app).get("/static/task.js").status_code == 200


def test_an_admin_cannot_deactivate_itself_or_the_last_admin_through_the_api(app):
    admin = new_client(app, "boss", admin=True)
    own = admin.post("/api/admin/labelers/boss/deactivate")
    assert own.status_code == 422 and "your own account" in own.json()["detail"]
    assert admin.get("/api/me").status_code == 200


def test_reinviting_keeps_a_deactivated_account_deactivated_until_reactivated(app):
    from alignloop.labeling.accounts import invite_token_from

    admin = new_client(app, "boss", admin=True)
    new_client(app, "ada")
    assert admin.post("/api/admin/labelers/ada/deactivate").status_code == 200
    link = admin.post("/api/admin/labelers/ada/reinvite").json()["invite_url"]
    token = invite_token_from(link)
    refused = TestClient(app).post("/api/invite/accept", json={"token": token, "password": PASSWORD})
    assert refused.status_code == 400
    assert not next(row for row in admin.get("/api/admin/labelers").json() if row["name"] == "ada")["active"]
    assert admin.post("/api/admin/labelers/ada/reactivate").status_code == 200
    accepted = TestClient(app).post("/api/invite/accept", json={"token": token, "password": PASSWORD})
    assert accepted.status_code == 200


def test_seconds_spent_beyond_a_week_is_refused(app):
    client = new_client(app, "ada")
    task = take(client)
    for seconds in (1e308, 8 * 86400, -1):
        assert rank(client, task, seconds_spent=seconds).status_code == 422
    assert rank(client, task, seconds_spent=30).status_code == 201


def test_names_that_do_not_survive_a_url_are_refused_for_new_accounts(app):
    admin = new_client(app, "boss", admin=True)
    for name in ("%62ob", "x?y", "..", "a#b", "a b"):
        assert admin.post("/api/admin/labelers", json={"name": name}).status_code == 422, name
    assert admin.post("/api/admin/labelers", json={"name": "jo.doe@lab-1"}).status_code == 201


def test_the_deactivate_form_names_the_account_in_its_body(app):
    from alignloop.store import Labeler

    admin = new_client(app, "boss", admin=True)
    bob = new_client(app, "bob")
    with app.state.service.store.session() as s:  # an account named before names were restricted
        s.add(Labeler(name="%62ob", role="labeler", active=True))
    token = _csrf(admin.get("/admin/labelers").text)
    page = admin.post("/admin/labelers/deactivate", data={"name": "%62ob", "csrf_token": token})
    assert page.status_code == 200
    assert bob.get("/api/me").status_code == 200
    rows = {row["name"]: row["active"] for row in admin.get("/api/admin/labelers").json()}
    assert rows == {"boss": True, "bob": True, "%62ob": False}


def test_the_quality_table_counts_the_judgements_the_export_shows(app):
    import collections

    admin = new_client(app, "boss", admin=True)
    clients = [new_client(app, name) for name in ("ann", "ben", "cat", "dan")]
    for client, n in zip(clients, (5, 5, 4, 4)):
        for _ in range(n):
            task = take(client)
            assert rank(client, task).status_code == 201
    exported = [json.loads(line) for line in admin.get("/api/admin/export/judgements").text.splitlines()]
    counts = collections.Counter(row["labeler"] for row in exported if row["kind"] != "skip")
    quality = admin.get("/api/admin/quality").json()
    assert {q["name"]: q["n_ranked"] for q in quality["labelers"]} == dict(counts)
    page = admin.get("/admin").text
    assert all(f"<td>{name}</td><td>{n}</td>" in page for name, n in counts.items())


def test_the_dashboard_lists_groups_of_labelers_when_they_split(app, monkeypatch):
    import alignloop.labeling.routes_admin as routes_admin

    admin = new_client(app, "boss", admin=True)
    row = {"name": "ann", "n_ranked": 9, "n_judgements": 9, "tau_shrunk": 0.8, "position_bias": 0.2, "flagged": False}
    groups = [
        {"group": 1, "labeler_ids": [2, 3], "names": ["ann", "bob"], "agreement": 0.81},
        {"group": 2, "labeler_ids": [4, 5], "names": ["cid", "dee"], "agreement": 0.64},
    ]
    agreement = {"krippendorff_alpha": 0.4, "pairwise_agreement": 0.6, "kendall_w_mean": 0.5, "prompts": 9}
    summary = {"available": True, **agreement, "labeler_groups": groups, "labelers": [row]}
    monkeypatch.setattr(routes_admin, "quality_report", lambda svc: {**summary})
    monkeypatch.setattr(routes_admin, "quality_chart_html", lambda labelers: "")
    page = admin.get("/admin").text
    assert "The labelers form 2 groups with different tastes" in page
    assert "Group 1 (agree τ 0.81): ann, bob" in page and "Group 2 (agree τ 0.64): cid, dee" in page
