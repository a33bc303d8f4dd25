"""Submissions that do not fit their task are refused with a message, and nothing is stored."""

from __future__ import annotations

import pytest

from .helpers import add_tasks, count_judgements, new_client, rank, take


def _post(client, task, body, kind="ranking"):
    return client.post(f"/api/tasks/{task['assignment_id']}/{kind}", json=body)


def _ids(task: dict) -> list[int]:
    return [c["id"] for c in task["completions"]]


@pytest.mark.parametrize(
    ("make_ranking", "message"),
    [
        (lambda ids: [[i] for i in ids[:-1]], "leaves out"),
        (lambda ids: [[i] for i in ids] + [[ids[0]]], "more than once"),
        (lambda ids: [[i] for i in ids] + [[99999]], "not part of this task"),
        (lambda ids: [], "non-empty"),
        (lambda ids: [[ids[0], ids[1]]] + [[i] for i in ids[2:]], "does not allow ties"),
        (lambda ids: [[]] + [[i] for i in ids], "non-empty list"),
    ],
)
def test_a_ranking_that_is_not_a_permutation_of_the_tasks_completions_is_refused(app, make_ranking, message):
    client = new_client(app, "ada")
    task = take(client)
    response = _post(client, task, {"ranking": make_ranking(_ids(task))})
    assert response.status_code == 422
    assert message in response.json()["detail"]
    assert count_judgements(app) == 0


def test_a_ranking_with_wrong_types_is_refused(app):
    client = new_client(app, "ada")
    task = take(client)
    for ranking in ([["1"], ["2"]], [1, 2, 3, 4], "1,2,3,4", [[True], [False]]):
        response = _post(client, task, {"ranking": ranking})
        assert response.status_code == 422, ranking
        assert response.json()["detail"].startswith("ranking")
    assert count_judgements(app) == 0


def test_ties_are_accepted_when_the_project_allows_them(make_app, project_dir):
    add_tasks(project_dir, 1)
    app = make_app(allow_ties=True)
    client = new_client(app, "ada")
    task = take(client)
    assert task["allow_ties"] is True
    ids = _ids(task)
    response = _post(client, task, {"ranking": [[ids[0], ids[1]], [ids[2]], [ids[3]]]})
    assert response.status_code == 201
    assert response.json()["ranking"] == [[ids[0], ids[1]], [ids[2]], [ids[3]]]


def test_a_task_assigned_to_someone_else_is_refused(app):
    ada, bob = new_client(app, "ada"), new_client(app, "bob")
    task = take(ada)
    response = _post(bob, task, {"ranking": [[i] for i in _ids(task)]})
    assert response.status_code == 403 and "not assigned to you" in response.json()["detail"]
    assert count_judgements(app) == 0


def test_a_task_that_does_not_exist_is_404(app):
    client = new_client(app, "ada")
    response = client.post("/api/tasks/424242/ranking", json={"ranking": [[1]]})
    assert response.status_code == 404 and "no task 424242" in response.json()["detail"]


def test_a_task_already_submitted_is_refused(app):
    client = new_client(app, "ada")
    task = take(client)
    assert rank(client, task, idempotency_key="first").status_code == 201
    again = rank(client, task, idempotency_key="second")
    assert again.status_code == 409 and "already submitted" in again.json()["detail"]
    skip = client.post(f"/api/tasks/{task['assignment_id']}/skip", json={"reason": "changed my mind"})
    assert skip.status_code == 409
    assert count_judgements(app) == 1


def test_the_same_idempotency_key_stores_the_judgement_once(app):
    client = new_client(app, "ada")
    task = take(client)
    first = rank(client, task, idempotency_key="retry-me")
    second = rank(client, task, idempotency_key="retry-me")
    assert first.status_code == 201 and first.json()["replayed"] is False
    assert second.status_code == 200 and second.json()["replayed"] is True
    assert second.json()["judgement_id"] == first.json()["judgement_id"]
    assert count_judgements(app) == 1


def test_an_idempotency_key_cannot_be_reused_for_another_task(app):
    client = new_client(app, "ada")
    first = take(client)
    assert rank(client, first, idempotency_key="k").status_code == 201
    second = take(client)
    response = rank(client, second, idempotency_key="k")
    assert response.status_code == 409 and "idempotency_key" in response.json()["detail"]
    assert count_judgements(app) == 1


def test_thumbs_on_a_ranking_task_are_refused(app):
    client = new_client(app, "ada")
    task = take(client)
    response = _post(client, task, {"thumbs": {str(i): 1 for i in _ids(task)}}, kind="thumbs")
    assert response.status_code == 422 and "ranking task" in response.json()["detail"]


def test_thumbs_tasks_need_one_vote_per_completion(make_app, project_dir):
    add_tasks(project_dir, 2)
    app = make_app(task_type="thumbs")
    client = new_client(app, "ada")
    task = take(client)
    assert task["task_type"] == "thumbs"
    ids = _ids(task)
    partial = _post(client, task, {"thumbs": {str(ids[0]): 1}}, kind="thumbs")
    assert partial.status_code == 422 and "leave out" in partial.json()["detail"]
    wrong = _post(client, task, {"thumbs": {str(i): 2 for i in ids}}, kind="thumbs")
    assert wrong.status_code == 422
    ranking = _post(client, task, {"ranking": [[i] for i in ids]})
    assert ranking.status_code == 422 and "thumbs task" in ranking.json()["detail"]
    assert count_judgements(app) == 0
    votes = {str(i): (1 if n % 2 else -1) for n, i in enumerate(ids)}
    stored = _post(client, task, {"thumbs": votes, "unusable": {str(ids[0]): "nonsense"}}, kind="thumbs")
    assert stored.status_code == 201
    assert stored.json()["thumbs"] == votes and stored.json()["kind"] == "thumbs"


def test_unusable_flags_must_name_the_tasks_completions_and_a_known_reason(app):
    client = new_client(app, "ada")
    task = take(client)
    ids = _ids(task)
    ranking = [[i] for i in ids]
    bad_reason = _post(client, task, {"ranking": ranking, "unusable": {str(ids[0]): "boring"}})
    assert bad_reason.status_code == 422
    foreign = _post(client, task, {"ranking": ranking, "unusable": {"99999": "harmful"}})
    assert foreign.status_code == 422 and "not part of this task" in foreign.json()["detail"]
    assert count_judgements(app) == 0
    body = {
        "ranking": ranking,
        "unusable": {str(ids[1]): "pii"},
        "comment": "  has a phone number ",
        "seconds_spent": 12.5,
    }
    stored = _post(client, task, body)
    assert stored.status_code == 201
    judgement = stored.json()
    assert judgement["unusable"] == {str(ids[1]): "pii"}
    assert judgement["comment"] == "has a phone number" and judgement["seconds_spent"] == 12.5


def test_negative_time_spent_is_refused(app):
    client = new_client(app, "ada")
    task = take(client)
    response = _post(client, task, {"ranking": [[i] for i in _ids(task)], "seconds_spent": -1})
    assert response.status_code == 422 and "seconds_spent" in response.json()["detail"]


def test_time_spent_defaults_to_the_time_since_the_task_was_handed_out(app):
    client = new_client(app, "ada")
    task = take(client)
    judgement = rank(client, task).json()
    assert 0 <= judgement["seconds_spent"] < 60


def test_labelers_see_only_their_own_judgements(app):
    ada, bob = new_client(app, "ada"), new_client(app, "bob")
    assert rank(ada, take(ada)).status_code == 201
    assert rank(bob, take(bob)).status_code == 201
    mine = ada.get("/api/judgements/mine").json()
    assert len(mine) == 1
    assert bob.get("/api/judgements/mine").json()[0]["judgement_id"] != mine[0]["judgement_id"]


def test_a_keyless_resubmission_is_replayed_only_with_the_same_body(app):
    client = new_client(app, "alice")
    task = take(client)
    ids = [c["id"] for c in task["completions"]]
    assert _post(client, task, {"ranking": [[i] for i in ids]}, "ranking").status_code == 201
    same = _post(client, task, {"ranking": [[i] for i in ids]}, "ranking")
    assert same.status_code == 200 and same.json()["replayed"] is True
    for kind, body in [
        ("ranking", {"ranking": [[i] for i in reversed(ids)]}),
        ("ranking", {"ranking": [[ids[0]], [ids[0]]]}),
        ("ranking", {"ranking": [[i] for i in ids], "comment": "changed my mind"}),
        ("skip", {"reason": "no idea"}),
    ]:
        response = _post(client, task, body, kind)
        assert 400 <= response.status_code < 500 and response.status_code != 200, (kind, body, response.text)
    assert count_judgements(app) == 1


def test_a_keyed_retry_with_a_different_body_is_refused(app):
    client = new_client(app, "alice")
    task = take(client)
    ids = [c["id"] for c in task["completions"]]
    first = _post(client, task, {"ranking": [[i] for i in ids], "idempotency_key": "k1"}, "ranking")
    assert first.status_code == 201
    other = _post(client, task, {"ranking": [[i] for i in reversed(ids)], "idempotency_key": "k1"}, "ranking")
    assert other.status_code == 409 and "different judgement" in other.json()["detail"]
    assert count_judgements(app) == 1


def test_keyless_thumbs_resubmitted_differently_are_refused(make_app, project_dir):
    add_tasks(project_dir, 3)
    app = make_app(task_type="thumbs")
    client = new_client(app, "alice")
    task = take(client)
    ids = [str(c["id"]) for c in task["completions"]]
    assert _post(client, task, {"thumbs": dict.fromkeys(ids, 1)}, "thumbs").status_code == 201
    assert _post(client, task, {"thumbs": dict.fromkeys(ids, 1)}, "thumbs").json()["replayed"] is True
    assert _post(client, task, {"thumbs": dict.fromkeys(ids, -1)}, "thumbs").status_code == 409


def test_idempotency_keys_belong_to_their_labeler(app):
    alice = new_client(app, "alice")
    bob = new_client(app, "bob")
    bobs = take(bob)
    alices = take(alice)
    key = f"assignment-{bobs['assignment_id']}"
    assert rank(alice, alices, idempotency_key=key).status_code == 201
    assert rank(bob, bobs).status_code == 201
    assert rank(bob, take(bob), idempotency_key=key).status_code == 201  # the same key, bob's own
    assert count_judgements(app) == 3
