"""The pages' actions in a real Chromium, inside the Airflow UI of a real `airflow api-server`
(issue 17, 4): an admin saves a version, starts a first release and rolls back a canary from
the pages, answering their confirmations, and the registry changes; a viewer sees no controls
and the same request from the page is refused. The server and the registry state come from
tests/integration/test_page_actions.py (releases served on an emulated Kubernetes API)."""

from __future__ import annotations

import contextlib
import json
import re

import pytest

from tests.integration.test_page_actions import DATASTORE, model, running_release, server, state  # noqa: F401
from tests.tools import require_tool


@pytest.fixture(scope="module")
def chromium() -> str:
    return require_tool("chromium")


@contextlib.contextmanager
def signed_in(chromium: str, server, user: str):
    """A page of a headless Chromium holding ``user``'s Airflow session cookie."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"], headless=True)
        try:
            context = browser.new_context()
            context.add_cookies([{"name": "_token", "value": server.api.token(user), "url": server.api.url}])
            yield context.new_page()
        finally:
            browser.close()


def open_view(page, server, view: str):
    """elearn's ``view`` in the Airflow UI (an iframe at /plugin/elearn-<view>), once it has loaded."""
    from playwright.sync_api import expect

    page.goto(f"{server.api.url}/plugin/elearn-{view}")
    frame = page.frame_locator("iframe")
    expect(frame.locator("main h1")).to_be_visible(timeout=30_000)  # the Airflow UI first, then the frame
    return frame


def shown(model: str, version: int, capsys) -> dict:
    """`elearn model show MODEL VERSION --json`: what the registry now says."""
    from elearn.cli import main

    capsys.readouterr()
    assert main(["model", "show", model, str(version), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def answer(frame, yes: bool) -> str:
    """Answer the page's confirmation (a <dialog>: the Airflow UI's frame may not open the
    browser's own); returns its question."""
    from playwright.sync_api import expect

    dialog = frame.locator("#action-confirm")
    expect(dialog).to_be_visible()
    question = dialog.locator("p").inner_text()
    dialog.locator("button", has_text="continue" if yes else "cancel").click()
    expect(dialog).to_be_hidden()
    return question


def test_an_editor_saves_releases_and_rolls_back_from_the_pages(chromium, server, model, monkeypatch, capsys):
    from playwright.sync_api import expect

    from elearn.serving.releases import current_release

    with signed_in(chromium, server, "admin") as page:
        frame = open_view(page, server, "models")
        result = frame.locator("#action-result")
        row = frame.locator(f"#version-{model}-1")
        row.locator("input[name=reason]").fill("the one to keep")
        row.locator("form.save button").click()  # saving moves no traffic: nothing to confirm
        expect(result).to_have_text(f"saved {model} v1")
        expect(row.locator("form.unsave")).to_be_visible()  # the row, shown again from the server
        v1 = shown(model, 1, capsys)
        assert (v1["saved"], v1["saved_by"], v1["saved_reason"]) == (True, "admin (api)", "the one to keep")

        row.locator("form.release button").click()  # the first release: production at once, so it asks
        assert answer(frame, yes=True) == (f"{model} has no production version yet: v1 becomes production at once "
                                           f"and takes all of its traffic. Release it?")
        expect(result).to_have_text(re.compile(rf"started the release of {model} v1: release \d+ PROMOTED; "
                                               rf"traffic v1 100%"))
        expect(row.locator(".pill", has_text="production")).to_be_visible()
        assert "production" in shown(model, 1, capsys)["aliases"]
        assert server.served(model) == [(f"{model}-v1", 100)]

        running_release_of_v2(model, monkeypatch)  # its quality gate let through here, in the test's process
        frame = open_view(page, server, "releases")
        result = frame.locator("#action-result")
        release = current_release(model)
        row = frame.locator(f"#release-{release.id}")
        expect(row).to_contain_text("RUNNING")
        question = f"Roll back {model} v2: all traffic returns to v1 and v2 stops serving. Continue?"
        row.locator("form.rollback button").click()
        assert answer(frame, yes=False) == question  # declined: nothing moves
        expect(result).to_have_text("cancelled: nothing was changed")
        assert current_release(model).state == "RUNNING"
        assert server.served(model) == [(f"{model}-v1", 80), (f"{model}-v2", 20)]
        row.locator("form.rollback button").click()
        assert answer(frame, yes=True) == question
        expect(result).to_have_text(f"rolled back {model} v2: release {release.id} ROLLED_BACK; traffic v1 100%, v2 0%")
        expect(row).to_contain_text("ROLLED_BACK")
        expect(row.locator("form.action")).to_have_count(0)
        assert current_release(model).state == "ROLLED_BACK"
        assert server.served(model) == [(f"{model}-v1", 100)]

        frame = open_view(page, server, "models")  # an error from the API is one line on the page
        frame.locator(f"#version-{model}-3 form.release button").click()  # beside production: nothing to confirm
        expect(frame.locator("#action-result")).to_have_text(
            f"refused (409 conflict): {model} v3 is not saved; save it first (elearn model save {model} 3) so the "
            f"released version can never be collected, or pass --force")
        expect(frame.locator("#action-confirm")).to_be_hidden()
    assert shown(model, 1, capsys)["aliases"] == ["production"] and not shown(model, 3, capsys)["saved"]


def running_release_of_v2(model: str, monkeypatch) -> None:
    from elearn.registry import get_store
    from elearn.serving.gates import Decision
    from elearn.serving.releases import reconcile, start_release

    monkeypatch.setattr("elearn.serving.quality.check", lambda *a, **k: Decision("promote", "test"))
    get_store().save_version(model, 2, by="test")
    reconcile(start_release(model, 2, weight=20, by="test"))


def test_a_viewer_sees_no_controls_and_the_pages_request_is_403(chromium, server, model, monkeypatch):
    from playwright.sync_api import expect

    running_release(model, monkeypatch)
    before = state(model)
    with signed_in(chromium, server, "viewer") as page:
        for view in ("models", "releases"):
            frame = open_view(page, server, view)
            expect(frame.locator("table").first).to_be_visible()
            expect(frame.locator("form.action")).to_have_count(0)
        frame = open_view(page, server, "datastores")
        frame.locator("#datastores a", has_text=DATASTORE).click()
        expect(frame.locator("#snapshots")).to_contain_text(f"{model} v1")
        expect(frame.locator("form.action")).to_have_count(0)
        frame.locator("#snapshots a", has_text=f"{model} v1").click()
        expect(frame.locator("h1")).to_have_text(f"{model} v1")
        expect(frame.locator("form.action")).to_have_count(0)

        # what the controls send, sent from the viewer's own page with its token: the role decides
        elearn = next(f for f in page.frames if f.url.startswith(f"{server.api.url}/elearn/ui/models/"))
        elearn.wait_for_function("() => typeof window.elearnWriteHeaders === 'function'")  # the page's script ran
        answers = elearn.evaluate("""async (model) => {
            const api = "/elearn/api/v1", out = [];
            for (const [method, path, body] of [
                ["POST", `/models/${model}/versions/1/save`, {reason: "mine"}],
                ["POST", `/releases/${model}/rollback`, null],
                ["POST", "/releases", {model, version: 3, weight: 10}]]) {
              const r = await fetch(api + path, {method, credentials: "same-origin",
                headers: {"Content-Type": "application/json", ...window.elearnWriteHeaders()},
                body: body ? JSON.stringify(body) : undefined});
              out.push([r.status, (await r.json()).message]);
            }
            return out;
        }""", model)
    assert [status for status, _ in answers] == [403, 403, 403], answers
    assert all("user 'viewer' may only read" in message for _, message in answers), answers
    assert state(model) == before
