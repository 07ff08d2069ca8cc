"""An internal error never shows its insides to the caller (issue 15, 8): a generic 500 with an
id, and the server's log has the exception under that id."""

import logging


def test_an_internal_error_answers_a_generic_500_with_an_id_the_log_has(elearn_home, caplog):
    from fastapi.testclient import TestClient

    from elearn.api.app import create_app
    from elearn.api.auth import authorize

    app = create_app()
    app.dependency_overrides[authorize] = lambda: None  # signed in: the point here is the error

    @app.get("/boom")
    def boom():
        raise KeyError("postgresql://elearn:hunter2@db/elearn")  # an internal detail that must not leak

    with caplog.at_level(logging.ERROR, logger="elearn.api.app"):
        answer = TestClient(app, raise_server_exceptions=False).get("/boom")
    body = answer.json()
    assert answer.status_code == 500 and body["code"] == "internal"
    assert "hunter2" not in answer.text and "KeyError" not in answer.text
    assert body["message"] == f"internal error {body['error_id']}; the server's log has the details under that id"
    logged = [r for r in caplog.records if body["error_id"] in r.getMessage()]
    assert logged and logged[0].exc_info and "hunter2" in str(logged[0].exc_info[1])


def test_a_huge_run_id_in_a_page_is_a_400_not_a_500(elearn_home):
    """``/ui/runs/<a number past the database's integers>`` answered 500 (issue 15, 8)."""
    from fastapi.testclient import TestClient

    from elearn.api.app import create_app
    from elearn.api.auth import authorize

    app = create_app()
    app.dependency_overrides[authorize] = lambda: None
    client = TestClient(app, raise_server_exceptions=False)
    for path in ("/ui/runs/99999999999999999999", "/api/v1/runs/99999999999999999999"):
        answer = client.get(path)
        assert answer.status_code == 400 and answer.json()["code"] == "invalid_input", (path, answer.text)
        assert answer.json()["message"].startswith("run_id:")
