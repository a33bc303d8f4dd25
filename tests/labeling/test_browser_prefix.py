"""The labeling app behind a reverse proxy under a path prefix (``serve --root-path /labels``), in Chromium.

The proxy is a small stdlib one on loopback: it passes ``/labels/...`` on to the app with the prefix
stripped, as nginx's ``proxy_pass http://app/;`` does, and answers 404 to anything else, so a link,
form, script or redirect that forgets the prefix breaks the test.
"""

from __future__ import annotations

import http.client
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlparse

from sqlalchemy import select

from alignloop.labeling.accounts import invite_url
from alignloop.labeling.server import start_server
from alignloop.project import open_project
from alignloop.store import Judgement

from .helpers import PASSWORD, add_tasks
from .test_browser import _invite, browser  # noqa: F401 - the Chromium fixture

PREFIX = "/labels"
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-connection"}


class PrefixProxy:
    """A reverse proxy on 127.0.0.1 that serves the app at ``backend`` under ``PREFIX``."""

    def __init__(self, backend: str) -> None:
        target = urlparse(backend)
        self.missed: list[str] = []  # paths outside the prefix that the browser asked for
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def _forward(self) -> None:
                if not self.path.startswith(PREFIX + "/"):
                    proxy.missed.append(self.path)
                    self.send_error(404, "outside the proxied prefix")
                    return
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
                upstream = http.client.HTTPConnection(target.hostname, target.port, timeout=30)
                upstream.request(self.command, self.path[len(PREFIX) :], body=body, headers=headers)
                response = upstream.getresponse()
                payload = response.read()
                self.send_response(response.status, response.reason)
                for key, value in response.getheaders():  # Set-Cookie may come several times
                    if key.lower() not in HOP_BY_HOP | {"content-length"}:
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
                upstream.close()

            do_GET = do_POST = _forward

            def log_message(self, *args: object) -> None:  # quiet
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}{PREFIX}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_behind_a_proxy_under_a_prefix_a_labeler_signs_in_and_ranks(browser, project_dir: Path):  # noqa: F811
    add_tasks(project_dir, 2)
    token = _invite(project_dir, "ada")
    server = start_server(project_dir, root_path=PREFIX)
    proxy = PrefixProxy(server.url)
    try:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)

        page.goto(invite_url(proxy.url, token))  # the invite link as `labelers add --url .../labels` prints it
        page.fill('input[name="password"]', PASSWORD)
        page.fill('input[name="password_again"]', PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(f"**{PREFIX}/guidelines")
        page.click("#acknowledge")
        page.wait_for_url(f"**{PREFIX}/task")

        page.click("button:has-text('Sign out')")  # then sign in through the login form
        page.wait_for_url(f"**{PREFIX}/login")
        page.goto(f"{proxy.url}/task")  # not signed in: sent to the prefixed sign-in page, and back after
        page.wait_for_url(f"**{PREFIX}/login?next=/task")
        page.fill('input[name="name"]', "ada")
        page.fill('input[name="password"]', PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(f"**{PREFIX}/task")
        assert page.locator("link[rel=stylesheet]").get_attribute("href") == f"{PREFIX}/static/app.css"

        task = page.locator("#task")
        first = task.get_attribute("data-assignment")
        cards = page.locator(".completion")
        numbers = [cards.nth(i).get_attribute("data-number") for i in range(cards.count())]
        for key in numbers[:-1]:
            page.keyboard.press(key)
        page.keyboard.press("Enter")  # the script posts to the prefixed API, then loads the next task
        page.wait_for_function(
            "first => document.querySelector('#task') && document.querySelector('#task').dataset.assignment !== first",
            arg=first,
        )
        assert page.url.endswith(f"{PREFIX}/task")
        assert errors == []
        assert proxy.missed == []
    finally:
        proxy.stop()
        server.stop()

    handle = open_project(project_dir)
    with handle.store.session() as s:
        judgements = s.scalars(select(Judgement)).all()
    handle.close()
    assert len(judgements) == 1 and judgements[0].ranking is not None
