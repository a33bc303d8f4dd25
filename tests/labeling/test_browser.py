"""A real browser (Debian's chromium through Playwright): invite, guidelines, rank by keyboard, next task.

Saves docs/img/ranking.png, the screenshot the README shows.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from sqlalchemy import select

from alignloop.labeling.accounts import add_labeler, invite_url
from alignloop.labeling.server import start_server
from alignloop.project import open_project
from alignloop.store import Judgement

from .helpers import PASSWORD, add_tasks

CHROMIUM = "/usr/bin/chromium"
SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "img" / "ranking.png"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = pytest.mark.browser


@pytest.fixture
def browser():
    if not Path(CHROMIUM).exists() or shutil.which("chromium") is None:
        pytest.skip("Debian's chromium is not installed (apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        yield browser
        browser.close()


BASIL = "How do I keep a basil plant alive on a windowsill?"
ANSWERS = [
    "Give it at least six hours of direct sun, water when the top centimetre of soil is dry, and pinch off "
    "flower buds so it keeps making leaves. Harvest from the top, just above a pair of leaves.",
    "Basil is a herb in the mint family. It is used in Italian cooking, for example in pesto.",
    "Water it every day and keep it in a dark corner so the leaves do not burn.",
    "Put it in sunlight and water it sometimes.",
]


def _add_realistic_task(project_dir: Path) -> None:
    """One prompt with four answers of clearly different quality: the screenshot shows a plausible task."""
    import hashlib

    from alignloop.store import Completion, Prompt, Round

    handle = open_project(project_dir)
    with handle.store.session() as s:
        round_ = Round(project_id=handle.project_id, index=0, kind="train", policy="demo", metrics={})
        prompt = Prompt(
            project_id=handle.project_id,
            text=BASIL,
            messages=[{"role": "user", "content": BASIL}],
            text_hash=hashlib.sha256(BASIL.encode()).hexdigest(),
            split="train",
        )
        s.add_all([round_, prompt])
        s.flush()
        for i, answer in enumerate(ANSWERS):
            s.add(
                Completion(
                    prompt_id=prompt.id,
                    round_id=round_.id,
                    sample_index=i,
                    text=answer,
                    model="demo",
                    seed=i,
                    params={},
                    prompt_tokens=20,
                    completion_tokens=40,
                    finish_reason="stop",
                )
            )
    handle.close()


def _invite(project_dir: Path, name: str) -> str:
    """A new labeler account; returns its one-time invite token."""
    handle = open_project(project_dir)
    token = add_labeler(handle.store, name)
    handle.close()
    return token


def _choose_password(page, server_url: str, token: str) -> None:
    """Open the invite link and set the password (the app then shows the guidelines)."""
    page.goto(invite_url(server_url, token))
    page.fill('input[name="password"]', PASSWORD)
    page.fill('input[name="password_again"]', PASSWORD)
    page.click("button[type=submit]")


def _first_task(page, server_url: str, token: str) -> None:
    """Accept the invite, acknowledge the guidelines and wait for the first task."""
    _choose_password(page, server_url, token)
    page.click("#acknowledge")
    page.wait_for_url("**/task")


def _the_judgement(project_dir: Path) -> Judgement:
    """The project's single stored judgement."""
    handle = open_project(project_dir)
    with handle.store.session() as s:
        judgement = s.scalars(select(Judgement)).one()
    handle.close()
    return judgement


def test_invite_guidelines_keyboard_ranking_and_next_task(browser, project_dir):
    _add_realistic_task(project_dir)
    add_tasks(project_dir, 2)
    token = _invite(project_dir, "ada")
    server = start_server(project_dir)
    try:
        # A fixed clock, locale and zone: the screenshot (with its "reserved until") is the same on every run.
        page = browser.new_page(viewport={"width": 1280, "height": 900}, locale="en-GB", timezone_id="UTC")
        page.clock.set_fixed_time("2026-12-05T09:00:00Z")
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)

        _choose_password(page, server.url, token)
        page.wait_for_url("**/guidelines")
        assert "The task and the criterion" in page.content()
        page.click("#acknowledge")
        page.wait_for_url("**/task")

        assert BASIL in page.content()  # the least-judged, oldest prompt comes first
        task = page.locator("#task")
        first_assignment = task.get_attribute("data-assignment")
        cards = page.locator(".completion")
        assert cards.count() == 4
        numbers = {
            cards.nth(i).get_attribute("data-number"): int(cards.nth(i).get_attribute("data-id")) for i in range(4)
        }
        submit = page.locator("#submit")
        assert submit.is_disabled()
        by_text = {
            cards.nth(i).locator(".text").inner_text(): cards.nth(i).get_attribute("data-number") for i in range(4)
        }
        keys = [by_text[answer] for answer in ANSWERS]  # best first, as the guidelines ask
        for key in keys[:3]:  # the last answer is placed automatically
            page.keyboard.press(key)
        assert submit.is_enabled()
        expected = [numbers[key] for key in keys]
        shown = [int(cards.nth(i).get_attribute("data-id")) for i in range(4)]
        assert shown == expected
        assert page.locator(".completion.placed").count() == 4
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOT))  # what the screen shows: the Submit bar at its bottom

        page.keyboard.press("Enter")
        page.wait_for_function(
            "first => document.querySelector('#task') && document.querySelector('#task').dataset.assignment !== first",
            arg=first_assignment,
        )
        assert page.locator(".completion").count() == 4
        assert errors == []
    finally:
        server.stop()

    judgement = _the_judgement(project_dir)
    assert judgement.ranking == [[cid] for cid in expected]
    assert judgement.seconds_spent is not None and judgement.seconds_spent > 0
    assert SCREENSHOT.stat().st_size > 10_000


def test_drag_and_drop_with_ties_and_an_unusable_flag(browser, project_dir):
    from .helpers import set_labeling

    add_tasks(project_dir, 2)
    set_labeling(project_dir, allow_ties=True)
    token = _invite(project_dir, "bob")
    server = start_server(project_dir)
    try:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        _first_task(page, server.url, token)
        cards = page.locator(".completion")
        ids = [int(cards.nth(i).get_attribute("data-id")) for i in range(4)]
        cards.nth(3).drag_to(cards.nth(0), target_position={"x": 20, "y": 5})  # last card to the top
        order = [int(cards.nth(i).get_attribute("data-id")) for i in range(4)]
        assert order == [ids[3], ids[0], ids[1], ids[2]]
        assert page.locator(".completion.placed").count() == 1  # one drag places the dragged card only
        assert page.locator("#submit").is_disabled()
        for key in ("1", "2"):  # the rest in the order shown; the last places itself
            page.keyboard.press(key)
        assert page.locator(".completion.placed").count() == 4
        cards.nth(1).locator(".tie").check()  # second place level with the first
        cards.nth(3).locator(".unusable").select_option("nonsense")
        page.fill("#comment", "two equally good answers")
        page.click("#submit")
        page.wait_for_function(
            "document.querySelector('#task') === null || document.querySelectorAll('.placed').length === 0"
        )
    finally:
        server.stop()
    judgement = _the_judgement(project_dir)
    assert judgement.ranking == [[ids[3], ids[0]], [ids[1]], [ids[2]]]
    assert judgement.unusable == {str(ids[2]): "nonsense"}
    assert judgement.comment == "two equally good answers"


def test_thumbs_by_keyboard(browser, project_dir):
    from .helpers import set_labeling

    add_tasks(project_dir, 2)
    set_labeling(project_dir, task_type="thumbs")
    token = _invite(project_dir, "cy")
    server = start_server(project_dir)
    try:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        _first_task(page, server.url, token)
        first = page.locator("#task").get_attribute("data-assignment")
        cards = page.locator(".completion")
        votes = {"1": "u", "2": "d", "3": "u", "4": "d"}
        for number, vote in votes.items():
            page.keyboard.press(number)
            page.keyboard.press(vote)
        expected = {cards.nth(int(n) - 1).get_attribute("data-id"): (1 if v == "u" else -1) for n, v in votes.items()}
        page.keyboard.press("Enter")
        page.wait_for_function("first => document.querySelector('#task').dataset.assignment !== first", arg=first)
    finally:
        server.stop()
    judgement = _the_judgement(project_dir)
    assert judgement.kind == "thumbs" and judgement.thumbs == expected


def test_keyboard_ties_and_starting_over(browser, project_dir):
    from .helpers import set_labeling

    add_tasks(project_dir, 1)
    set_labeling(project_dir, allow_ties=True)
    token = _invite(project_dir, "di")
    server = start_server(project_dir)
    try:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        _first_task(page, server.url, token)
        cards = page.locator(".completion")
        numbers = {
            cards.nth(i).get_attribute("data-number"): int(cards.nth(i).get_attribute("data-id")) for i in range(4)
        }
        page.keyboard.press("4")
        page.keyboard.press("Backspace")  # start over
        assert page.locator(".completion.placed").count() == 0
        for key in ("2", "=", "3", "1"):
            page.keyboard.press(key)
        assert "(level)" in cards.nth(1).locator(".place").inner_text()
        page.keyboard.press("Enter")
        page.wait_for_selector("#empty")
    finally:
        server.stop()
    judgement = _the_judgement(project_dir)
    assert judgement.ranking == [[numbers["2"], numbers["3"]], [numbers["1"]], [numbers["4"]]]


def test_enter_on_a_focused_button_does_not_submit_the_ranking(browser, project_dir):
    add_tasks(project_dir, 2)
    token = _invite(project_dir, "eve")
    server = start_server(project_dir)
    try:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        _first_task(page, server.url, token)
        first = page.locator("#task").get_attribute("data-assignment")
        for key in ("1", "2", "3"):
            page.keyboard.press(key)
        assert page.locator("#submit").is_enabled()
        buttons = page.locator("#task button:not(#submit):enabled")
        assert buttons.count() > 0
        buttons.first.focus()  # e.g. Tab to "Start over"
        page.keyboard.press("Enter")
        page.wait_for_timeout(500)
        assert page.locator("#task").get_attribute("data-assignment") == first
    finally:
        server.stop()
    handle = open_project(project_dir)
    with handle.store.session() as s:
        assert s.scalars(select(Judgement)).first() is None
    handle.close()


def test_thumbs_buttons_sit_beside_their_labels_and_the_guidelines_speak_of_thumbs(browser, project_dir):
    from .helpers import set_labeling

    add_tasks(project_dir, 2)
    set_labeling(project_dir, task_type="thumbs")
    token = _invite(project_dir, "tom")
    server = start_server(project_dir)
    try:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        _choose_password(page, server.url, token)
        page.wait_for_url("**/guidelines")
        text = page.locator("main").inner_text()
        assert "thumbs up" in text and "drag" not in text.lower() and "rank them" not in text
        page.click("#acknowledge")
        page.wait_for_url("**/task")
        label = page.locator(".thumbs label").first
        radio = label.locator("input")
        box, radio_box = label.bounding_box(), radio.bounding_box()
        assert radio_box["width"] < 40  # not stretched across the card
        assert box["height"] < 2 * radio_box["height"] + 8  # radio and its text on one line
    finally:
        server.stop()


PHONE = {"viewport": {"width": 375, "height": 667}, "has_touch": True, "is_mobile": True, "device_scale_factor": 2}


def _phone(browser):
    """A page in a 375-px-wide touch screen, like a small phone."""
    return browser.new_context(**PHONE).new_page()


def _on_screen(locator) -> bool:
    box = locator.bounding_box()
    return box is not None and box["y"] >= 0 and box["y"] + box["height"] <= PHONE["viewport"]["height"]


def _order(page) -> list[int]:
    cards = page.locator(".completion")
    return [int(cards.nth(i).get_attribute("data-id")) for i in range(cards.count())]


def _wait_for_next_task(page, first: str) -> None:
    page.wait_for_function("first => document.querySelector('#task').dataset.assignment !== first", arg=first)


def test_a_phone_ranks_by_tapping_and_keeps_submit_in_reach(browser, project_dir):
    _add_realistic_task(project_dir)  # long answers: on a phone they fill several screens
    add_tasks(project_dir, 1)
    token = _invite(project_dir, "pia")
    server = start_server(project_dir)
    try:
        page = _phone(browser)
        _first_task(page, server.url, token)
        first = page.locator("#task").get_attribute("data-assignment")
        assert page.evaluate("document.documentElement.scrollWidth") <= 375  # nothing sticks out sideways
        submit = page.locator("#submit")
        assert _on_screen(submit) and submit.is_disabled()
        card = {answer: page.locator(".completion", has_text=answer[:40]) for answer in ANSWERS}
        ids = {answer: int(card[answer].get_attribute("data-id")) for answer in ANSWERS}

        card[ANSWERS[2]].locator(".text").tap()
        card[ANSWERS[0]].locator(".text").tap()
        assert page.locator(".completion.placed").count() == 2
        card[ANSWERS[2]].locator(".text").tap()  # a placed answer taken out again
        assert page.locator(".completion.placed").count() == 1
        assert card[ANSWERS[2]].locator(".place").inner_text() == "not placed"
        assert card[ANSWERS[0]].locator(".place").inner_text() == "1st"
        card[ANSWERS[3]].locator(".text").tap()
        card[ANSWERS[1]].locator(".text").tap()  # the last one places itself
        assert page.locator(".completion.placed").count() == 4
        expected = [ids[ANSWERS[i]] for i in (0, 3, 1, 2)]
        assert _order(page) == expected
        assert page.locator("#progress").inner_text() == "4 of 4 placed"
        page.evaluate("window.scrollTo(0, document.body.scrollHeight / 3)")  # mid-way through the answers
        assert _on_screen(submit) and submit.is_enabled()
        submit.tap()
        _wait_for_next_task(page, first)
    finally:
        server.stop()
    assert _the_judgement(project_dir).ranking == [[cid] for cid in expected]


def test_a_phone_ranks_with_the_up_and_down_buttons_also_from_the_keyboard(browser, project_dir):
    add_tasks(project_dir, 2)
    token = _invite(project_dir, "raj")
    server = start_server(project_dir)
    try:
        page = _phone(browser)
        _first_task(page, server.url, token)
        first = page.locator("#task").get_attribute("data-assignment")
        shown = _order(page)
        card = {cid: page.locator(f'.completion[data-id="{cid}"]') for cid in shown}
        c1, c2, c3, c4 = shown
        for cid in (c1, c2, c3):  # up on an unplaced answer places it next; the last places itself
            card[cid].locator(".up").tap()
        assert page.locator(".completion.placed").count() == 4 and _order(page) == [c1, c2, c3, c4]
        card[c4].locator(".up").tap()
        card[c4].locator(".up").tap()
        assert _order(page) == [c1, c4, c2, c3]
        assert card[c1].locator(".up").is_disabled()  # nothing above the first
        down = card[c1].locator(".down")
        down.focus()
        page.keyboard.press("Enter")  # the buttons are ordinary buttons: Enter and Space press them
        page.keyboard.press(" ")  # focus stays on the button that moved
        assert _order(page) == [c4, c2, c1, c3]
        assert page.locator("#task").get_attribute("data-assignment") == first  # Enter on a button is not Submit
        card[c3].locator(".down").tap()  # down on the last placed answer takes it out
        assert page.locator(".completion.placed").count() == 3 and page.locator("#submit").is_disabled()
        card[c3].locator(".up").tap()
        page.locator("#submit").tap()
        _wait_for_next_task(page, first)
    finally:
        server.stop()
    assert _the_judgement(project_dir).ranking == [[c4], [c2], [c1], [c3]]


def test_a_late_submission_after_someone_else_took_the_task_says_so_and_keeps_the_answer(browser, project_dir):
    from .helpers import set_labeling

    add_tasks(project_dir, 1)
    set_labeling(project_dir, overlap=1, lease_minutes=0.02)  # 1.2 s
    ada, bob = _invite(project_dir, "ada"), _invite(project_dir, "bob")
    server = start_server(project_dir)
    try:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        _first_task(page, server.url, ada)
        assert "Reserved for you until" in page.locator("#lease").inner_text()
        for key in ("1", "2", "3"):
            page.keyboard.press(key)
        page.fill("#comment", "answer 2 invents a citation")
        page.wait_for_timeout(1500)  # ada's lease runs out ...
        other = browser.new_page()
        _first_task(other, server.url, bob)  # ... and bob is given the task
        assert other.locator("#task").count() == 1
        page.click("#submit")
        page.wait_for_selector("#next-task")
        assert "another labeler has taken it" in page.locator("#status").inner_text()
        assert page.locator("#comment").input_value() == "answer 2 invents a citation"
        assert page.locator(".completion.placed").count() == 4 and page.locator("#submit").is_disabled()
    finally:
        server.stop()
    handle = open_project(project_dir)
    with handle.store.session() as s:
        assert s.scalars(select(Judgement)).first() is None
    handle.close()


def test_deactivate_on_an_awkwardly_named_row_deactivates_that_account_only(browser, project_dir):
    from alignloop.store import Labeler

    handle = open_project(project_dir)
    token = add_labeler(handle.store, "boss", admin=True)
    awkward = ["%62ob", "..", "bob/x", "bob"]  # names the old raw-URL form turned into another account (or 404)
    with handle.store.session() as s:  # straight into the store: new names can no longer be like these
        s.add_all([Labeler(name=name, role="labeler", active=True) for name in awkward if name != "bob"])
    add_labeler(handle.store, "bob")
    handle.close()

    def active() -> dict[str, bool]:
        handle = open_project(project_dir)
        with handle.store.session() as s:
            found = {row.name: row.active for row in s.scalars(select(Labeler).where(Labeler.name != "boss"))}
        handle.close()
        return found

    server = start_server(project_dir)
    try:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.on("dialog", lambda dialog: dialog.accept())  # "Deactivate %62ob? ..."
        _choose_password(page, server.url, token)
        page.wait_for_url("**/guidelines")
        page.goto(f"{server.url}/admin/labelers")
        for done, name in enumerate(awkward[:3], start=1):
            row = page.locator("tbody tr").filter(has=page.get_by_role("cell", name=name, exact=True))
            assert row.count() == 1
            with page.expect_navigation():
                row.get_by_role("button", name="Deactivate").click()
            assert row.get_by_role("button", name="Reactivate").count() == 1
            states = active()
            assert [n for n in awkward if not states[n]] == awkward[:done]  # that one more, nobody else
        assert active()["bob"] is True
    finally:
        server.stop()
