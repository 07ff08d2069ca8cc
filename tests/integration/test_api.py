"""The REST API and the pages through a real `airflow api-server`, as real users of its auth
manager (an admin and a viewer): authentication, the write check, errors, OpenAPI, fuzzing."""

from __future__ import annotations

import os
import subprocess

import pytest

from testbed.airflow_api import airflow_api_server
from testbed import VENV_BIN, elearn_env


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    home = tmp_path_factory.mktemp("api") / "elearn"
    saved = {k: os.environ.get(k) for k in ("ELEARN_HOME", "AIRFLOW_HOME")}
    os.environ.update({k: v for k, v in elearn_env(home).items() if k in ("ELEARN_HOME", "AIRFLOW_HOME")})
    try:
        seed_registry(home)
        with airflow_api_server(home) as server:
            yield server
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def seed_registry(home):
    """flight_delay v1 (READY, candidate) and v2 (READY, its loss NaN), a study with two trials, a gang run."""
    from elearn.objectstore import default_store
    from elearn.registry import get_store, publish_version
    from elearn.tuning import StudyConfig, ask, create_study, tell
    from elearn.tuning.studies import end_round, report_epochs

    objects, store = default_store(), get_store()
    staged = home / "staged"
    staged.mkdir(parents=True)
    (staged / "model.keras").write_bytes(b"model bytes")
    objects.put_file(staged / "model.keras", "staged/model.keras")
    for n in (1, 2):  # v2's loss diverged: NaN
        publish_version(store, objects, "flight_delay", "staged", params={"learning_rate": 0.01 * n},
                        metrics={"auc": 0.6 + n / 100, "loss": 0.5 if n == 1 else float("nan")},
                        dag_run_id=f"manual__{n}",
                        lineage={"datastore": "flight_features", "snapshot_id": 1000 + n, "dag_id": "nightly_retraining",
                                 "dag_run_id": f"manual__{n}", "datastore_rows": 100})
    store.set_alias("flight_delay", "candidate", 1)
    create_study(StudyConfig(name="flight_delay-s1", space={"lr": {"type": "loguniform", "low": 1e-3, "high": 1e-1}},
                             metric="val_auc", direction="maximize", max_trials=2, parallelism=2))
    for i, trial in enumerate(ask("flight_delay-s1", 0)):
        report_epochs(trial.id, {1: 0.6 + i / 10, 2: 0.65 + i / 10})
        tell(trial.id, "COMPLETED", value=0.65 + i / 10)
    end_round("flight_delay-s1")


def app_routes() -> list[tuple[str, str]]:
    """Every (method, path) the app serves, its path parameters filled with real values: the
    list follows the app, not a hand-written copy of it (issue 15, 8)."""
    import re

    from fastapi.routing import APIRoute

    from elearn.api.app import create_app

    values = {"model": "flight_delay", "version": "1", "name": "flight_features", "alias": "candidate",
              "snapshot_id": "1001", "run_id": "1"}
    return [(method, re.sub(r"{(\w+)[^}]*}", lambda m: values[m[1]], route.path))
            for route in create_app().routes if isinstance(route, APIRoute) for method in sorted(route.methods)]


def test_every_route_needs_a_signed_in_user(api):
    routes = app_routes()
    assert len(routes) >= 30 and ("PUT", "/api/v1/models/flight_delay/aliases/candidate") in routes
    with api.client(None) as anonymous:
        for method, path in routes:
            r = anonymous.request(method, path, follow_redirects=False)
            if path.startswith("/ui"):  # a page sends the browser to Airflow's login
                assert r.status_code in (302, 307) and "/auth/login" in r.headers["location"], (method, path)
                continue
            assert r.status_code == 401, (method, path, r.text)
            assert r.json()["code"] == "unauthorized"
        bad = anonymous.get("/api/v1/models", headers={"Authorization": "Bearer not-a-jwt"})
        assert bad.status_code == 401 and "invalid or expired token" in bad.json()["message"]
        page = anonymous.get("/ui/models", follow_redirects=False)
        assert page.status_code in (302, 307) and "/auth/login" in page.headers["location"]
        assert anonymous.get("/docs").status_code in (401, 404)  # FastAPI's unauthenticated docs are off


def test_a_viewer_reads_but_cannot_change(api):
    from elearn.registry import get_store

    with api.client("viewer") as viewer:
        models = viewer.get("/api/v1/models").json()
        assert [(m["name"], m["versions"]) for m in models] == [("flight_delay", 2)]
        listed = viewer.get("/api/v1/models/flight_delay/versions")
        assert [v["version"] for v in listed.json()] == [2, 1]
        # a diverged loss is null in a list as in one version (JSON has no NaN: a browser's JSON.parse
        # refuses the bare token)
        assert [v["metrics"]["loss"] for v in listed.json()] == [None, 0.5] and "NaN" not in listed.text
        one = viewer.get("/api/v1/models/flight_delay/versions/2")
        assert one.json()["metrics"]["loss"] is None and "NaN" not in one.text
        one = viewer.get("/api/v1/models/flight_delay/versions/1").json()
        assert one["lineage"]["snapshot_id"] == 1001 and one["aliases"] == ["candidate"]
        assert viewer.get("/api/v1/models/flight_delay/versions", params={"limit": 1, "offset": 1}).json()[0][
            "version"] == 1
        r = viewer.post("/api/v1/models/flight_delay/versions/1/save", json={"reason": "mine"})
        assert r.status_code == 403 and r.json()["code"] == "forbidden" and "may only read" in r.json()["message"]
        r = viewer.put("/api/v1/models/flight_delay/aliases/production", json={"version": 1})
        assert r.status_code == 403
    assert not get_store().get_version("flight_delay", 1).saved
    assert "production" not in get_store().get_version("flight_delay", 1).aliases


def test_an_admin_changes_and_is_recorded(api):
    from elearn.registry import get_store

    with api.client("admin") as admin:
        r = admin.post("/api/v1/models/flight_delay/versions/2/save", json={"reason": "best so far"})
        assert r.status_code == 200 and r.json()["saved"] and r.json()["saved_by"] == "admin (api)"
        r = admin.put("/api/v1/models/flight_delay/aliases/staging", json={"version": 2})
        assert r.status_code == 200 and r.json()["version"] == 2
        aliases = admin.get("/api/v1/models/flight_delay/aliases").json()
        assert aliases["current"] == {"candidate": 1, "staging": 2}
        assert aliases["history"][-1]["changed_by"] == "admin (api)"
        assert admin.delete("/api/v1/models/flight_delay/versions/2/save").json()["saved"] is False
        verified = admin.post("/api/v1/models/flight_delay/versions/1/verify").json()
        assert verified["healthy"] and verified["ok"] == ["model.keras"]
    mv = get_store().get_version("flight_delay", 2)
    assert mv.aliases == ["staging"] and not mv.saved


@pytest.mark.parametrize("method, path, body, status, code, words", [
    ("GET", "/api/v1/models/flight_delay/versions/9", None, 404, "not_found", "no version 9"),
    ("GET", "/api/v1/models/nope/versions", None, 200, None, None),
    ("GET", "/api/v1/datastores/nope", None, 404, "not_found", "does not exist"),
    ("GET", "/api/v1/studies/nope", None, 404, "not_found", "nope"),
    ("GET", "/api/v1/runs/424242", None, 404, "not_found", "424242"),
    ("GET", "/api/v1/releases/flight_delay", None, 404, "not_found", "has no release"),
    ("GET", "/api/v1/models/flight_delay/versions/0", None, 400, "invalid_input", "version"),
    ("GET", "/api/v1/models/flight_delay/versions", {"limit": 0}, 400, "invalid_input", "limit"),
    ("PUT", "/api/v1/models/flight_delay/aliases/candidate", {"version": "two"}, 400, "invalid_input", "version"),
    ("PUT", "/api/v1/models/flight_delay/aliases/candidate", {"version": 9}, 404, "not_found", "no version 9"),
    # production moves only through a release (quality gate, traffic): by hand it is refused, nothing moves
    ("PUT", "/api/v1/models/flight_delay/aliases/production", {"version": 1}, 409, "conflict",
     "moves only through a release, so the quality gate and the traffic follow it: `elearn release start"),
    ("POST", "/api/v1/models/flight_delay/aliases/production/rollback", None, 409, "conflict",
     "`elearn release promote|rollback flight_delay`"),
    ("POST", "/api/v1/models/flight_delay/aliases/nothing/rollback", None, 404, "not_found", "nothing"),
])
def test_errors_are_json_with_a_code(api, method, path, body, status, code, words):
    with api.client("admin") as admin:
        kwargs = {"params": body} if method == "GET" else {"json": body}
        r = admin.request(method, path, **kwargs)
    assert r.status_code == status, r.text
    if code:
        assert r.json()["code"] == code and words in r.json()["message"], r.json()


def test_studies_runs_and_openapi(api):
    with api.client("viewer") as viewer:
        studies = viewer.get("/api/v1/studies").json()
        assert [s["name"] for s in studies] == ["flight_delay-s1"]
        study = viewer.get("/api/v1/studies/flight_delay-s1").json()
        assert study["best_trial"] == 1 and len(study["trials"]) == 2
        assert study["curves"]["1"] == {"1": pytest.approx(0.7), "2": pytest.approx(0.75)}
        spec = viewer.get("/api/v1/openapi.json").json()
        assert spec["info"]["title"] == "elearn"
        assert {"/api/v1/models/{model}/versions/{version}", "/api/v1/datastores/{name}/snapshots",
                "/api/v1/studies/{name}/plot", "/api/v1/runs/{run_id}", "/api/v1/releases"} <= set(spec["paths"])
        page = viewer.get("/ui/studies/flight_delay-s1")
        assert page.status_code == 200 and page.text.count('class="trial-curve"') == 2


def test_pages_show_the_registry_with_the_session_cookie(api):
    import httpx

    cookie = {"_token": api.token("viewer")}
    models = httpx.get(f"{api.url}/elearn/ui/models", cookies=cookie, timeout=30)
    assert models.status_code == 200 and "text/html" in models.headers["content-type"]
    assert models.text.count('href="/elearn/ui/models/flight_delay/') == 2
    version = httpx.get(f"{api.url}/elearn/ui/models/flight_delay/1", cookies=cookie, timeout=30).text
    assert 'href="/elearn/ui/datastores/flight_features#snapshot-1001"' in version
    assert 'href="/dags/nightly_retraining/runs/manual__1"' in version
    plugins = httpx.get(f"{api.url}/api/v2/plugins", headers={"Authorization": f"Bearer {api.token('viewer')}"},
                        timeout=30).json()["plugins"]
    views = next(p for p in plugins if p["name"] == "elearn")["external_views"]
    assert [(v["name"], v["href"], v["category"]) for v in views][:2] == [
        ("Datastores", "/elearn/ui/datastores", "elearn"), ("Models", "/elearn/ui/models", "elearn")]


def test_fuzzing_the_api_from_its_openapi_finds_no_server_error(api, tmp_path):
    spec = tmp_path / "openapi.json"
    with api.client("admin") as admin:
        spec.write_text(admin.get("/api/v1/openapi.json").text)
    done = subprocess.run([str(VENV_BIN / "schemathesis"), "run", str(spec), "--url", f"{api.url}/elearn",
                           "--header", f"Authorization: Bearer {api.token('admin')}", "--checks", "not_a_server_error",
                           "--max-examples", "15", "--phases", "examples,fuzzing", "--no-color"],
                          capture_output=True, text=True, timeout=600, env={**os.environ, "NO_COLOR": "1"},
                          cwd=tmp_path)  # its cache folder (.schemathesis) goes there, not into the checkout
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-4000:]
    import re

    cases = re.search(r"(\d+) generated, (\d+) passed", out)
    assert cases and int(cases[1]) == int(cases[2]) > 100, out[-3000:]
    assert re.search(r"Examples \(in [\d.]+s\)\s+✅ \d+ passed", out), out[:3000]  # the seeded versions too


def test_fuzzing_the_pages_finds_no_server_error(api, tmp_path):
    """The pages are left out of the API's OpenAPI document (they answer HTML), so they are fuzzed
    from one made for them here, from the app's own routes, signed in as a browser is."""
    import copy
    import json
    import re

    from fastapi.openapi.utils import get_openapi

    from elearn.api.app import create_app

    routes = []
    for route in create_app().routes:
        if getattr(route, "path", "").startswith("/ui"):
            route = copy.copy(route)
            route.include_in_schema = True
            routes.append(route)
    spec = get_openapi(title="elearn pages", version="1", openapi_version="3.1.0", routes=routes)
    assert {"/ui/datastores/{name}", "/ui/models/{model}/{version}", "/ui/runs/{run_id}",
            "/ui/studies/{name}"} <= set(spec["paths"])
    # first the values a generator rarely draws: past the database's integers, paths, long, odd bytes
    import httpx

    cookie = {"Cookie": f"_token={api.token('viewer')}"}
    hostile = ["0", "-1", "99999999999999999999999", "1e309", "..", "%2e%2e", "x" * 400, "%00", "%C3%BC", "a;b'"]
    for path in spec["paths"]:
        for value in hostile if "{" in path else [None]:
            url = f"{api.url}/elearn" + (re.sub(r"\{[^}]+\}", value, path) if value else path)
            r = httpx.get(url, headers=cookie, timeout=30, follow_redirects=False)
            assert r.status_code < 500, (url, r.status_code, r.text[:300])
    (tmp_path / "pages.json").write_text(json.dumps(spec))
    done = subprocess.run([str(VENV_BIN / "schemathesis"), "run", str(tmp_path / "pages.json"),
                           "--url", f"{api.url}/elearn", "--header", f"Cookie: _token={api.token('viewer')}",
                           "--checks", "not_a_server_error", "--max-examples", "25", "--phases", "examples,coverage,fuzzing",
                           "--no-color"],
                          capture_output=True, text=True, timeout=600, env={**os.environ, "NO_COLOR": "1"},
                          cwd=tmp_path)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-4000:]
    cases = re.search(r"(\d+) generated, (\d+) passed", out)
    assert cases and int(cases[1]) == int(cases[2]) > 50, out[-3000:]
