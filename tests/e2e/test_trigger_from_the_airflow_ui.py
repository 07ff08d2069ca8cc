"""Scheduling work the way a user does (issue 17): in a real Chromium, open the nightly DAG in
the Airflow UI of a running `airflow standalone`, fill its trigger form (a small sample, one
epoch), trigger it, wait for the run, and find the new version on elearn's Models page. Minutes
(a whole pipeline run under the scheduler), so behind the `heavy` marker; .ci/run runs it."""

from __future__ import annotations


import pytest

from testbed.airflow_standalone import airflow_standalone, wait_for_run
from testbed import REPO
from tests.tools import require_tool


@pytest.mark.heavy
def test_a_user_triggers_the_nightly_dag_from_its_form_and_finds_the_version_on_the_models_page(tmp_path):
    from playwright.sync_api import expect, sync_playwright

    chromium = require_tool("chromium")
    # no cron runs: unpaused, the nightly would also start its latest 02:00 run at once (catchup=False runs the
    # latest interval), a second training on the defaults beside the user's
    no_cron = {"AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False"}
    with airflow_standalone(tmp_path, [REPO / "dags" / "nightly_retraining.py"], no_cron, timeout=300) as (url, home, env), \
            sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"], headless=True)
        page = browser.new_page()
        page.goto(f"{url}/dags/nightly_retraining")
        page.get_by_role("button", name="Trigger").first.click(timeout=120_000)
        form = page.get_by_role("dialog")
        form.get_by_role("spinbutton", name="sample_fraction").fill("0.02")
        form.get_by_role("spinbutton", name="epochs").fill("1")
        form.get_by_role("spinbutton", name="workers").fill("1")
        form.get_by_role("contentinfo").get_by_role("button", name="Trigger").click()
        run = wait_for_run(url, "nightly_retraining", timeout=1500, run_type="manual")
        assert run["state"] == "success", run
        assert run["conf"]["sample_fraction"] == 0.02 and run["conf"]["epochs"] == 1  # what the form sent

        page.goto(f"{url}/plugin/elearn-models")  # elearn's page, in the Airflow UI's frame
        rows = page.frame_locator("iframe").locator("#versions tr")
        expect(rows).to_have_count(2, timeout=60_000)  # a header and the new v1
        expect(rows.nth(1)).to_contain_text(run["dag_run_id"])
        browser.close()
