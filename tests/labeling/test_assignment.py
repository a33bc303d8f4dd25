"""Assignment: overlap, never twice, least-judged first, leases, skips, shuffled display order, blind eval."""

from __future__ import annotations

import shutil
import time

from sqlalchemy import select

from alignloop.store import Assignment, Completion

from .helpers import add_tasks, new_client, rank, set_labeling, take


def test_each_prompt_goes_to_overlap_distinct_labelers(make_app, project_dir):
    add_tasks(project_dir, 2)
    app = make_app(overlap=2)
    clients = [new_client(app, f"l{i}") for i in range(5)]
    seen: dict[str, list[str]] = {}
    for i, client in enumerate(clients):
        while (response := client.post("/api/tasks/next")).status_code == 200:
            task = response.json()
            seen.setdefault(task["prompt"], []).append(f"l{i}")
            assert rank(client, task).status_code == 201
        assert response.status_code == 204
    assert len(seen) == 2
    for labelers in seen.values():
        assert len(labelers) == 2 and len(set(labelers)) == 2


def test_a_labeler_never_gets_the_same_prompt_twice(app):
    client = new_client(app, "ada")
    prompts = []
    while (response := client.post("/api/tasks/next")).status_code == 200:
        task = response.json()
        prompts.append(task["prompt"])
        assert rank(client, task).status_code == 201
    assert len(prompts) == 6 == len(set(prompts))


def test_the_least_judged_open_prompt_comes_next(app):
    first, second, third = (new_client(app, name) for name in ("a", "b", "c"))
    a = take(first)
    assert rank(first, a).status_code == 201
    # b must not get a's prompt while untouched prompts remain
    b = take(second)
    assert b["prompt"] != a["prompt"]
    assert rank(second, b).status_code == 201
    c = take(third)
    assert c["prompt"] not in (a["prompt"], b["prompt"])


def test_fetching_again_returns_the_task_already_held(app):
    client = new_client(app, "ada")
    assert take(client)["assignment_id"] == take(client)["assignment_id"]


def test_an_abandoned_task_returns_to_the_pool_after_its_lease(make_app, project_dir):
    add_tasks(project_dir, 1)
    app = make_app(overlap=1, lease_minutes=0.005)  # 0.3 s
    ada, bob = new_client(app, "ada"), new_client(app, "bob")
    abandoned = take(ada)
    assert bob.post("/api/tasks/next").status_code == 204  # the only slot is leased
    time.sleep(0.4)
    again = take(bob)
    assert again["prompt"] == abandoned["prompt"]
    # ada's lease expired and bob holds the slot now: her late submission is refused, nothing stored
    late = rank(ada, abandoned)
    assert late.status_code == 409 and "expired" in late.json()["detail"]
    assert rank(bob, again).status_code == 201


def test_late_work_on_an_expired_lease_is_kept_while_nobody_took_the_slot(make_app, project_dir):
    add_tasks(project_dir, 1)
    app = make_app(overlap=1, lease_minutes=0.005)
    ada = new_client(app, "ada")
    task = take(ada)
    time.sleep(0.4)
    assert rank(ada, task).status_code == 201


def test_a_skip_frees_the_slot_for_someone_else_but_not_for_the_skipper(make_app, project_dir):
    add_tasks(project_dir, 1)
    app = make_app(overlap=1)
    ada, bob = new_client(app, "ada"), new_client(app, "bob")
    task = take(ada)
    assert bob.post("/api/tasks/next").status_code == 204
    skipped = ada.post(f"/api/tasks/{task['assignment_id']}/skip", json={"reason": "I cannot judge chemistry"})
    assert skipped.status_code == 201 and skipped.json()["kind"] == "skip"
    assert skipped.json()["skip_reason"] == "I cannot judge chemistry"
    assert ada.post("/api/tasks/next").status_code == 204
    assert take(bob)["prompt"] == task["prompt"]


def test_a_skip_needs_a_reason(app):
    client = new_client(app, "ada")
    task = take(client)
    response = client.post(f"/api/tasks/{task['assignment_id']}/skip", json={"reason": "  "})
    assert response.status_code == 422 and "why" in response.json()["detail"]


def test_display_order_is_shuffled_per_labeler_and_stored(make_app, project_dir):
    add_tasks(project_dir, 1, k=6)
    app = make_app(overlap=12)
    orders = []
    for i in range(12):
        client = new_client(app, f"l{i}")
        task = take(client)
        orders.append([c["id"] for c in task["completions"]])
    assert len({tuple(o) for o in orders}) > 1
    with app.state.service.db.read() as s:
        stored = [a.display_order for a in s.scalars(select(Assignment).order_by(Assignment.id))]
    assert stored == orders
    assert all(sorted(o) == sorted(orders[0]) for o in orders)


def take_turns(app, names: tuple[str, ...] = ("a", "b", "c", "d")) -> list[tuple[str, str, list[int]]]:
    """Labelers taking one task each in turn until the queue is empty: (labeler, prompt, display order) per task."""
    clients = {name: new_client(app, name) for name in names}
    tasks = []
    while clients:
        for name, client in list(clients.items()):
            response = client.post("/api/tasks/next")
            if response.status_code == 204:
                del clients[name]
                continue
            task = response.json()
            tasks.append((name, task["prompt"], [c["id"] for c in task["completions"]]))
            assert rank(client, task).status_code == 201
    return tasks


def test_who_gets_what_in_what_order_repeats_whenever_the_board_refreshes(make_app, project_dir, tmp_path):
    """A seeded run repeats: the tasks do not depend on when the in-process board last reloaded, and the
    display order is drawn from ``labeling.display_seed``."""
    from alignloop.labeling.app import create_app

    add_tasks(project_dir, 8)
    set_labeling(project_dir, overlap=3, display_seed=7)
    twin = tmp_path / "twin"
    shutil.copytree(project_dir, twin)
    always, never = make_app(), create_app(twin)
    try:
        always.state.service.assigner.board.refresh_s = 0.0  # reloads at every claim
        never.state.service.assigner.board.refresh_s = 1e9  # loads once
        first = take_turns(always)
        assert len(first) == 8 * 3
        assert take_turns(never) == first
    finally:
        never.state.service.close()


def test_without_a_display_seed_the_display_order_is_drawn_afresh(make_app, project_dir, tmp_path):
    from alignloop.labeling.app import create_app

    add_tasks(project_dir, 4, k=6)
    twin = tmp_path / "twin"
    shutil.copytree(project_dir, twin)
    one, other = make_app(), create_app(twin)
    try:
        orders = [[order for _, _, order in take_turns(app)] for app in (one, other)]
        assert orders[0] != orders[1]
    finally:
        other.state.service.close()


def test_evaluation_rounds_are_blind_pairwise_tasks(make_app, project_dir):
    add_tasks(project_dir, 1, k=2, kind="eval", models=("policy-a-secret", "policy-b-secret"))
    app = make_app()
    client = new_client(app, "ada")
    response = client.post("/api/tasks/next")
    task = response.json()
    assert task["task_type"] == "pairwise" and len(task["completions"]) == 2
    assert "secret" not in response.text and "model" not in response.text
    assert set(task["completions"][0]) == {"id", "text"}
    assert rank(client, task).status_code == 201
    page = client.get("/task")
    assert "secret" not in page.text


def test_tasks_come_from_every_round_with_completions(make_app, project_dir):
    add_tasks(project_dir, 1)
    add_tasks(project_dir, 1)
    app = make_app(overlap=1)
    client = new_client(app, "ada")
    done = 0
    while (response := client.post("/api/tasks/next")).status_code == 200:
        assert rank(client, response.json()).status_code == 201
        done += 1
    assert done == 2


def test_an_empty_queue_answers_204_and_the_page_says_so(make_app, project_dir):
    app = make_app()
    client = new_client(app, "ada")
    assert client.post("/api/tasks/next").status_code == 204
    assert "No task for you right now" in client.get("/task").text


def test_the_task_page_shows_prompt_completions_and_controls(app):
    client = new_client(app, "ada")
    page = client.get("/task")
    task = take(client)  # the same lease
    for completion in task["completions"]:
        assert f'data-id="{completion["id"]}"' in page.text
    assert 'id="submit"' in page.text and 'id="skip"' in page.text and 'id="comment"' in page.text
    assert "harmful" in page.text and "nonsense" in page.text and "PII" in page.text
    with app.state.service.db.read() as s:
        models = set(s.scalars(select(Completion.model)))
    assert not any(model in page.text for model in models)


def test_deactivating_a_labeler_releases_the_tasks_they_hold(make_app, project_dir):
    add_tasks(project_dir, 1)
    app = make_app(overlap=1)
    ada, bob = new_client(app, "ada"), new_client(app, "bob")
    held = take(ada)
    assert bob.post("/api/tasks/next").status_code == 204
    app.state.service.deactivate("ada")
    assert take(bob)["prompt"] == held["prompt"]


def test_a_submission_can_take_the_next_task_in_the_same_request(make_app, project_dir):
    add_tasks(project_dir, 2)
    app = make_app(overlap=1)
    client = new_client(app, "ada")
    first = take(client)
    ranking = [[c["id"]] for c in first["completions"]]
    response = client.post(f"/api/tasks/{first['assignment_id']}/ranking?next=true", json={"ranking": ranking})
    assert response.status_code == 201
    second = response.json()["next_task"]
    assert second["prompt"] != first["prompt"] and second["assignment_id"] != first["assignment_id"]
    assert take(client)["assignment_id"] == second["assignment_id"]  # it is the lease now held
    skipped = client.post(f"/api/tasks/{second['assignment_id']}/skip?next=true", json={"reason": "unsure"})
    assert skipped.status_code == 201 and skipped.json()["next_task"] is None
    plain = rank(client, first, idempotency_key="other")
    assert plain.status_code == 409 and "next_task" not in plain.json()


# ---------------------------------------------------------------- active labeling (assignment: uncertainty)


def store_priorities(project_dir, round_id: int, priorities: dict[int, float]) -> None:
    """Write prompt priorities as `alignloop prioritize` would."""
    from alignloop.project import open_project
    from alignloop.store import PromptPriority

    handle = open_project(project_dir)
    try:
        with handle.store.session() as s:
            s.add_all(
                PromptPriority(round_id=round_id, prompt_id=pid, priority=value, reward_model="runs/reward-test")
                for pid, value in priorities.items()
            )
    finally:
        handle.close()


def prompt_texts(project_dir, prompt_ids: list[int]) -> list[str]:
    from alignloop.project import open_project
    from alignloop.store import Prompt

    handle = open_project(project_dir)
    try:
        with handle.store.session() as s:
            return [s.get(Prompt, pid).text for pid in prompt_ids]
    finally:
        handle.close()


def run_queue(client) -> list[str]:
    """The prompts of every task the labeler gets until the queue is empty, in order."""
    prompts = []
    while (response := client.post("/api/tasks/next")).status_code == 200:
        prompts.append(response.json()["prompt"])
        assert rank(client, response.json()).status_code == 201
    assert response.status_code == 204
    return prompts


def test_under_uncertainty_a_labelers_tasks_come_in_descending_priority_then_unscored(make_app, project_dir):
    round_id, p = add_tasks(project_dir, 6)
    store_priorities(project_dir, round_id, {p[0]: 0.2, p[1]: 0.9, p[3]: 0.5, p[5]: 0.7})
    app = make_app(assignment="uncertainty")
    texts = prompt_texts(project_dir, [p[1], p[5], p[3], p[0], p[2], p[4]])
    assert run_queue(new_client(app, "ada")) == texts


def test_under_uncertainty_the_most_uncertain_prompt_fills_its_overlap_first(make_app, project_dir):
    round_id, p = add_tasks(project_dir, 3)
    store_priorities(project_dir, round_id, {p[0]: 0.1, p[1]: 0.3, p[2]: 0.8})
    app = make_app(assignment="uncertainty", overlap=2)
    top, second = prompt_texts(project_dir, [p[2], p[1]])
    clients = [new_client(app, name) for name in ("a", "b", "c", "d", "e")]
    assert [take(c)["prompt"] for c in clients[:3]] == [top, top, second]
    seen: dict[str, list[str]] = {}
    for i, client in enumerate(clients):  # everyone labels to the end: overlap and never-twice still hold
        for prompt in run_queue(client):
            seen.setdefault(prompt, []).append(f"l{i}")
    assert set(seen) == set(prompt_texts(project_dir, p))
    assert all(len(names) == 2 == len(set(names)) for names in seen.values())


def test_under_uncertainty_without_priorities_the_least_judged_prompt_comes_next(make_app, project_dir):
    add_tasks(project_dir, 6)
    app = make_app(assignment="uncertainty")
    first, second = new_client(app, "a"), new_client(app, "b")
    a = take(first)
    assert take(second)["prompt"] != a["prompt"]


def test_the_default_least_judged_assignment_ignores_stored_priorities(make_app, project_dir):
    round_id, p = add_tasks(project_dir, 3)
    store_priorities(project_dir, round_id, {p[2]: 0.9})
    app = make_app()
    assert app.state.service.config.labeling.assignment == "least_judged"
    assert run_queue(new_client(app, "ada")) == prompt_texts(project_dir, p)


def test_under_uncertainty_the_exact_query_also_puts_the_highest_priority_first(make_app, project_dir):
    from alignloop.labeling.assignment import utcnow

    round_id, p = add_tasks(project_dir, 4)
    store_priorities(project_dir, round_id, {p[1]: 0.4, p[3]: 0.6})
    app = make_app(assignment="uncertainty")
    ada = new_client(app, "ada").get("/api/me").json()["id"]
    service = app.state.service
    with service.db.write_conn() as conn:  # the fallback when the in-process board is stale
        assert service.assigner._exact_open_slot(conn, ada, utcnow()) == (round_id, p[3])
