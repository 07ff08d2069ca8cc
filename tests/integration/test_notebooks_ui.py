"""Notebooks from the Airflow UI (issue 17, 1 and 3), in a real Chromium: an editor opens elearn's
Notebooks view inside Airflow, starts a notebook, opens it, and runs a cell that reads
`flight_features` by name; a viewer sees the list without the controls or the way in."""

from __future__ import annotations


import pytest

from testbed.airflow_api import airflow_api_server
from tests.conftest import home_environment
from tests.tools import require_tool


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    """A real `airflow api-server` over a home holding a small `flight_features` datastore."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from elearn.datastores import register_datastore
    from elearn.objectstore import default_store

    home = tmp_path_factory.mktemp("notebooks-ui") / "elearn"
    with home_environment(home):
        folder = tmp_path_factory.mktemp("features")
        pq.write_table(pa.table({"dep_hour": pa.array(range(1234), pa.int64())}), folder / "p.parquet")
        register_datastore("flight_features", folder, objects=default_store(),
                           properties={"dag_id": "d", "dag_run_id": "r", "task_id": "t"})
        with airflow_api_server(home) as server:
            yield server
        from elearn import notebooks

        for notebook in notebooks.list_notebooks():
            notebooks.stop(notebook.name)


def test_an_editor_starts_a_notebook_from_the_airflow_ui_and_reads_a_datastore_in_it(api):
    from playwright.sync_api import expect, sync_playwright

    chromium = require_tool("chromium")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"], headless=True)
        context = browser.new_context()
        context.add_cookies([{"name": "_token", "value": api.token("admin"), "url": api.url}])
        page = context.new_page()
        page.goto(f"{api.url}/plugin/elearn-notebooks")  # the Airflow UI, elearn's view in its frame
        frame = page.frame_locator("iframe")
        frame.locator("#start input[name=name]").fill("eda")
        frame.locator("#start button[type=submit]").click()
        opened = frame.locator("#notebooks tr[data-name=eda] a.open")
        expect(opened).to_be_visible(timeout=120_000)
        opened.click()  # JupyterLab opens in the same frame, inside the Airflow UI, signed in by its token
        lab = frame
        lab.locator(".jp-LauncherCard[data-category='Notebook']").first.click(timeout=120_000)
        # the kernel has started (its status in the toolbar), then a cell is typed and run
        expect(lab.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']")).to_be_visible(timeout=120_000)
        cell = lab.locator(".jp-Cell .cm-content").first
        cell.click(timeout=60_000)
        code = "import elearn.datastores as ds; print('rows', len(ds.read('flight_features')))"
        cell.press_sequentially(code)  # keystrokes, as a person types
        expect(cell).to_have_text(code)
        cell.press("Shift+Enter")
        expect(lab.locator(".jp-OutputArea-output").first).to_contain_text("rows 1234", timeout=120_000)
        browser.close()


def test_a_viewer_sees_the_notebooks_without_the_way_in(api):
    import httpx

    with api.client("admin") as admin:
        if not any(n["name"] == "shared" for n in admin.get("/api/v1/notebooks").json()):
            assert admin.post("/api/v1/notebooks", json={"name": "shared"}).status_code == 200
    cookie = {"_token": api.token("viewer")}
    page = httpx.get(f"{api.url}/elearn/ui/notebooks", cookies=cookie, timeout=30)
    assert page.status_code == 200 and 'data-name="shared"' in page.text
    assert "token=" not in page.text and 'id="start"' not in page.text and "a class=\"open\"" not in page.text
    with api.client("viewer") as viewer:
        listed = viewer.get("/api/v1/notebooks").json()
        assert [n["name"] for n in listed if n["name"] == "shared"] == ["shared"]
        assert all("open_url" not in n and "token" not in n for n in listed)
        assert viewer.post("/api/v1/notebooks", json={"name": "mine"}).status_code == 403
        assert viewer.delete("/api/v1/notebooks/shared").status_code == 403
    with api.client("admin") as admin:
        assert all("token=" in n["open_url"] for n in admin.get("/api/v1/notebooks").json())
        assert admin.delete("/api/v1/notebooks/shared").status_code == 200
