"""Accounts, invites, passwords, sessions, CSRF, roles and sign-in throttling."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from alignloop.labeling.accounts import add_labeler, deactivate_labeler, invite_url, list_labelers
from alignloop.store import Labeler

from .helpers import PASSWORD, new_client, take


def test_production_password_hashes_use_argon2id_with_the_library_defaults():
    from argon2 import PasswordHasher

    from alignloop.labeling import accounts

    hashed = PasswordHasher().hash("x")  # what accounts._hasher is outside tests
    assert hashed.startswith("$argon2id$") and "m=65536" in hashed
    assert accounts.verify_password(hashed, "x") and not accounts.verify_password(hashed, "y")
    assert not accounts.verify_password(None, "x") and not accounts.verify_password("not a hash", "x")


def test_invite_link_sets_an_argon2_password_and_signs_in(app):
    token = add_labeler(app.state.service.store, "ada")
    assert invite_url("http://host:8000/", token) == f"http://host:8000/invite/{token}"
    client = TestClient(app)
    response = client.post("/api/invite/accept", json={"token": invite_url("http://x", token), "password": PASSWORD})
    assert response.status_code == 200
    assert response.json()["name"] == "ada" and response.json()["csrf_token"]
    assert client.get("/api/me").json()["name"] == "ada"
    with app.state.service.db.read() as s:
        row = s.scalars(select(Labeler).where(Labeler.name == "ada")).one()
        assert row.password_hash.startswith("$argon2id$") and PASSWORD not in row.password_hash
        assert row.invite_token_hash is None  # consumed


def test_an_invite_works_only_once(app):
    token = add_labeler(app.state.service.store, "ada")
    assert TestClient(app).post("/api/invite/accept", json={"token": token, "password": PASSWORD}).status_code == 200
    again = TestClient(app).post("/api/invite/accept", json={"token": token, "password": "another password"})
    assert again.status_code == 409 and again.json()["reason"] == "used"
    assert "already used" in again.json()["detail"] and "sign in" in again.json()["detail"]
    unknown = TestClient(app).post("/api/invite/accept", json={"token": "no-such-token", "password": PASSWORD})
    assert unknown.status_code == 400 and "not valid" in unknown.json()["detail"]


def test_a_used_invite_link_says_sign_in_instead_of_asking_for_a_password(app):
    token = add_labeler(app.state.service.store, "ada")
    assert TestClient(app).post("/api/invite/accept", json={"token": token, "password": PASSWORD}).status_code == 200
    page = TestClient(app).get(f"/invite/{token}")
    assert page.status_code == 409
    assert "already used" in page.text and 'href="/login"' in page.text and 'name="password"' not in page.text


def test_an_expired_invite_shows_a_page_saying_to_ask_for_a_new_one_and_cannot_be_redeemed(app):
    store = app.state.service.store
    token = add_labeler(store, "ada", invite_days=1)
    with store.session() as s:  # eight days later
        row = s.scalars(select(Labeler).where(Labeler.name == "ada")).one()
        row.invite_expires_at = datetime.now(timezone.utc) - timedelta(days=1)
    page = TestClient(app).get(f"/invite/{token}")
    assert page.status_code == 410
    assert "expired" in page.text and "new one" in page.text and 'name="password"' not in page.text
    api = TestClient(app).post("/api/invite/accept", json={"token": token, "password": PASSWORD})
    assert api.status_code == 410 and api.json()["reason"] == "expired" and "new one" in api.json()["detail"]
    client = TestClient(app)
    client.get("/login")  # the pre-sign-in CSRF cookie
    csrf = client.cookies.get("alignloop_prelogin") or ""
    form = client.post(f"/invite/{token}", data={"password": PASSWORD, "password_again": PASSWORD, "csrf_token": csrf})
    assert form.status_code == 410 and "expired" in form.text
    with store.session() as s:
        assert s.scalars(select(Labeler).where(Labeler.name == "ada")).one().password_hash is None
    admin = new_client(app, "boss", admin=True)
    listed = {row["name"]: row for row in admin.get("/api/admin/labelers").json()}
    assert listed["ada"]["invite_expired"] is True
    fresh = admin.post("/api/admin/labelers/ada/reinvite").json()["invite_url"]  # the admin's new link works
    assert TestClient(app).post("/api/invite/accept", json={"token": fresh, "password": PASSWORD}).status_code == 200


def test_invites_expire_after_invite_days(make_app, project_dir):
    app = make_app(invite_days=2)
    admin = new_client(app, "boss", admin=True)
    assert admin.post("/api/admin/labelers", json={"name": "ada"}).status_code == 201
    with app.state.service.db.read() as s:
        expires = s.scalars(select(Labeler.invite_expires_at).where(Labeler.name == "ada")).one()
    left = expires.replace(tzinfo=timezone.utc) - datetime.now(timezone.utc)
    assert timedelta(days=2) - timedelta(minutes=1) < left <= timedelta(days=2)


def test_a_new_invite_link_revokes_the_used_one(app):
    token = add_labeler(app.state.service.store, "ada")
    assert TestClient(app).post("/api/invite/accept", json={"token": token, "password": PASSWORD}).status_code == 200
    admin = new_client(app, "boss", admin=True)
    assert admin.post("/api/admin/labelers/ada/reinvite").status_code == 200
    page = TestClient(app).get(f"/invite/{token}")
    assert page.status_code == 400 and "not valid" in page.text  # not "sign in": the old password is gone


def test_short_password_is_refused(app):
    token = add_labeler(app.state.service.store, "ada")
    response = TestClient(app).post("/api/invite/accept", json={"token": token, "password": "short"})
    assert response.status_code == 422
    assert "at least 8 characters" in response.json()["detail"]


def test_duplicate_and_malformed_names_are_refused(app):
    store = app.state.service.store
    add_labeler(store, "ada")
    for bad in ("ada", "two words", "", "a/b"):
        try:
            add_labeler(store, bad)
        except Exception as exc:  # its type is asserted below
            assert type(exc).__name__ == "InputError"
        else:
            raise AssertionError(f"{bad!r} was accepted")


def test_login_with_password_and_wrong_password(app):
    new_client(app, "ada")
    client = TestClient(app)
    assert client.post("/api/login", json={"name": "ada", "password": "wrong password"}).status_code == 401
    assert client.post("/api/login", json={"name": "nobody", "password": PASSWORD}).status_code == 401
    assert client.post("/api/login", json={"name": "ada", "password": PASSWORD}).status_code == 200


def test_session_cookie_is_signed_httponly_and_samesite(app):
    token = add_labeler(app.state.service.store, "ada")
    response = TestClient(app).post("/api/invite/accept", json={"token": token, "password": PASSWORD})
    cookie = response.headers["set-cookie"].lower()
    assert "alignloop_session=" in cookie and "httponly" in cookie and "samesite=lax" in cookie
    forged = TestClient(app, cookies={"alignloop_session": "eyJ1IjoxfQ.forged.signature"})
    assert forged.get("/api/me").status_code == 401


def test_repeated_failed_sign_ins_are_throttled(app):
    new_client(app, "ada")
    client = TestClient(app)
    for _ in range(5):
        assert client.post("/api/login", json={"name": "ada", "password": "wrong password"}).status_code == 401
    blocked = client.post("/api/login", json={"name": "ada", "password": PASSWORD})
    assert blocked.status_code == 429
    assert int(blocked.headers["retry-after"]) > 0


def test_api_without_a_session_is_401(app):
    client = TestClient(app)
    for method, path in [
        ("GET", "/api/me"),
        ("GET", "/api/guidelines"),
        ("POST", "/api/tasks/next"),
        ("POST", "/api/tasks/1/ranking"),
        ("GET", "/api/judgements/mine"),
        ("GET", "/api/admin/progress"),
        ("GET", "/api/admin/export/judgements"),
    ]:
        response = client.request(method, path, json={"ranking": [[1]]} if method == "POST" else None)
        assert response.status_code == 401, (method, path, response.status_code)
        assert "sign in" in response.json()["detail"]


def test_pages_without_a_session_redirect_to_sign_in(app):
    response = TestClient(app).get("/task", follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"].startswith("/login?next=/task")


def test_labelers_get_403_on_admin_pages_and_api(app):
    client = new_client(app, "ada")
    for path in ["/admin", "/admin/labelers", "/admin/guidelines", "/admin/export"]:
        assert client.get(path).status_code == 403, path
    for path in ["/api/admin/progress", "/api/admin/labelers", "/api/admin/guidelines", "/api/admin/export/judgements"]:
        assert client.get(path).status_code == 403, path
    assert client.post("/api/admin/labelers", json={"name": "mallory", "admin": True}).status_code == 403
    assert "mallory" not in [info.name for info in list_labelers(app.state.service.store)]


def test_state_changing_api_calls_need_the_csrf_header(app):
    client = new_client(app, "ada")
    task = take(client)
    del client.headers["X-CSRF-Token"]
    ranking = [[c["id"]] for c in task["completions"]]
    response = client.post(f"/api/tasks/{task['assignment_id']}/ranking", json={"ranking": ranking})
    assert response.status_code == 403 and "CSRF" in response.json()["detail"]
    client.headers["X-CSRF-Token"] = "0" * 40
    assert client.post(f"/api/tasks/{task['assignment_id']}/ranking", json={"ranking": ranking}).status_code == 403
    assert client.get("/api/judgements/mine").json() == []


def test_forms_need_their_csrf_token(app):
    client = new_client(app, "ada")
    # the sign-in form: a token in the page must match the cookie
    assert TestClient(app).post("/login", data={"name": "ada", "password": PASSWORD}).status_code == 403
    # a signed-in form (sign out) without the token
    assert client.post("/logout", data={}).status_code == 403
    assert client.get("/api/me").status_code == 200


def test_sign_in_form_follows_only_local_next(app):
    new_client(app, "ada")
    client = TestClient(app)
    page = client.get("/login")
    token = page.text.split('name="csrf_token" value="')[1].split('"')[0]
    response = client.post(
        "/login",
        data={"name": "ada", "password": PASSWORD, "csrf_token": token, "next": "https://evil.example/x"},
        follow_redirects=False,
    )
    assert response.status_code == 303 and response.headers["location"] == "/task"


def test_deactivated_labeler_is_locked_out_at_once(app):
    client = new_client(app, "ada")
    assert client.get("/api/me").status_code == 200
    app.state.service.deactivate("ada")
    assert client.get("/api/me").status_code == 401
    assert TestClient(app).post("/api/login", json={"name": "ada", "password": PASSWORD}).status_code == 401


def test_deactivation_from_another_process_takes_effect_within_the_cache_window(app):
    import time

    client = new_client(app, "ada")
    assert client.get("/api/me").status_code == 200
    deactivate_labeler(app.state.service.store, "ada")  # as the CLI would, bypassing the app's cache
    time.sleep(1.1)
    assert client.get("/api/me").status_code == 401


def test_logout_ends_the_session(app):
    client = new_client(app, "ada")
    assert client.post("/api/logout").status_code == 200
    assert client.get("/api/me").status_code == 401


def test_json_sign_in_refuses_bodies_a_cross_site_form_could_send(app):
    new_client(app, "ada")
    body = f'{{"name": "ada", "password": "{PASSWORD}"}}'.encode()
    for content_type in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data"):
        response = TestClient(app).post("/api/login", content=body, headers={"content-type": content_type})
        assert response.status_code == 422, content_type


def test_signing_out_ends_the_session_for_the_old_cookie_too(app: FastAPI) -> None:
    client = new_client(app, "alice")
    cookie = client.cookies.get("alignloop_session")
    assert client.post("/api/logout").status_code == 200
    stale = TestClient(app)
    stale.cookies.set("alignloop_session", cookie)
    assert stale.get("/api/me").status_code == 401


def test_the_sign_out_form_ends_the_session(app: FastAPI) -> None:
    client = new_client(app, "alice")
    cookie = client.cookies.get("alignloop_session")
    csrf = client.headers["X-CSRF-Token"]
    assert client.post("/logout", data={"csrf_token": csrf}, follow_redirects=False).status_code == 303
    stale = TestClient(app)
    stale.cookies.set("alignloop_session", cookie)
    assert stale.get("/api/me").status_code == 401


def test_signing_out_one_session_keeps_the_others(app: FastAPI) -> None:
    client = new_client(app, "alice")
    other = TestClient(app)
    assert other.post("/api/login", json={"name": "alice", "password": PASSWORD}).status_code == 200
    assert client.post("/api/logout").status_code == 200
    assert other.get("/api/me").status_code == 200


def test_a_new_invite_ends_every_session_of_the_account(app: FastAPI) -> None:
    admin = new_client(app, "root", admin=True)
    client = new_client(app, "alice")
    assert admin.post("/api/admin/labelers/alice/reinvite").status_code == 200
    assert client.get("/api/me").status_code == 401


def _fail(client: TestClient, name: str, times: int = 5) -> None:
    for _ in range(times):
        assert client.post("/api/login", json={"name": name, "password": "wrong password"}).status_code == 401


def test_surrounding_spaces_do_not_sidestep_the_sign_in_throttle(app: FastAPI) -> None:
    new_client(app, "dave")
    attacker = TestClient(app)
    _fail(attacker, "dave")
    for variant in (" dave", "dave ", "\tdave", "DAVE"):
        assert attacker.post("/api/login", json={"name": variant, "password": PASSWORD}).status_code == 429
        assert attacker.post("/api/login", json={"name": variant, "password": "guess"}).status_code == 429


def test_wrong_guesses_from_one_address_do_not_lock_the_account_for_others(app: FastAPI) -> None:
    new_client(app, "dave")
    attacker = TestClient(app, client=("10.0.0.66", 5000))
    _fail(attacker, "dave")
    assert attacker.post("/api/login", json={"name": "dave", "password": PASSWORD}).status_code == 429
    dave = TestClient(app, client=("10.0.0.7", 5000))
    assert dave.post("/api/login", json={"name": "dave", "password": PASSWORD}).status_code == 200


def test_one_address_guessing_many_names_is_throttled(app: FastAPI) -> None:
    new_client(app, "dave")
    attacker = TestClient(app, client=("10.0.0.66", 5000))
    for i in range(4):
        _fail(attacker, f"user{i}")  # 20 failures from one address, none of them for dave
    assert attacker.post("/api/login", json={"name": "dave", "password": PASSWORD}).status_code == 429
