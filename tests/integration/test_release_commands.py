"""`elearn release start` refuses bad input with one clear line and changes nothing."""

from __future__ import annotations

import pytest

from elearn.cli import main


@pytest.fixture
def versions(elearn_home, tmp_path):
    """flight_delay v1 (production, packaged), v2 (packaged, unsaved), v3 (no Bento) — registry
    records and files only: every case below is refused before anything is served."""
    from elearn.objectstore import default_store
    from elearn.registry import get_store, publish_version

    objects, store = default_store(), get_store()
    (tmp_path / "model.keras").write_bytes(b"not used")
    objects.put_file(tmp_path / "model.keras", "staged/model.keras")
    for n in (1, 2, 3):
        publish_version(store, objects, "flight_delay", "staged", params={"test_months": "11-12"}, metrics={},
                        lineage={"datastore": "flight_features", "snapshot_id": 1}, dag_run_id=None)
    for n in (1, 2):
        store.set_bento_tag("flight_delay", n, f"flight-delay:v{n}")
    store.set_alias("flight_delay", "production", 1)
    return store


@pytest.mark.parametrize("argv, message", [
    (["release", "start", "flight_delay", "9"], "model 'flight_delay' has no version 9"),
    (["release", "start", "nope", "1"], "nope"),
    (["release", "start", "flight_delay", "2"],
     "flight_delay v2 is not saved; save it first (elearn model save flight_delay 2)"),
    (["release", "start", "flight_delay", "3", "--force"], "flight_delay v3 is READY without a Bento"),
    (["release", "start", "flight_delay", "1"], "flight_delay v1 is already production"),
    (["release", "start", "flight_delay", "2", "--weight", "0"], "canary weight 0 must be a whole percent from 1 to 99"),
    (["release", "start", "flight_delay", "2", "--weight", "100"], "canary weight 100 must be"),
    (["release", "start", "flight_delay", "2", "--max-p99-ratio", "0.5"], "max_p99_ratio >= 1"),
    (["release", "status", "flight_delay"], "model 'flight_delay' has no release; start one with `elearn release start`"),
])
def test_bad_release_input_is_one_clear_line(versions, capsys, argv, message):
    from elearn.db import session_scope
    from elearn.serving.dbmodels import SqlRelease

    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("elearn: ") and message in err and len(err.strip().splitlines()) == 1, err
    with session_scope() as s:
        assert s.query(SqlRelease).count() == 0
    assert versions.get_by_alias("flight_delay", "production").version == 1


def test_weight_must_be_a_number(versions, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["release", "start", "flight_delay", "2", "--weight", "ten"])
    assert exc.value.code == 2 and "invalid int value: 'ten'" in capsys.readouterr().err


def test_a_version_without_test_months_cannot_be_compared(versions):
    from elearn.errors import InvalidInput
    from elearn.serving.quality import held_out_months

    assert held_out_months(versions.get_version("flight_delay", 1)) == "11-12"
    mv = versions.get_version("flight_delay", 1)
    bare = type(mv)(**{**mv.__dict__, "params": {}, "lineage": {"training_args": ["--epochs", "2"]}})
    with pytest.raises(InvalidInput, match="records no test months"):
        held_out_months(bare)
    args = type(mv)(**{**mv.__dict__, "params": {}, "lineage": {"training_args": ["--test-months", "12"]}})
    assert held_out_months(args) == "12"


def test_model_show_is_readable_and_json_for_scripts(versions, capsys):
    import json

    assert main(["model", "show", "flight_delay", "1"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("flight_delay v1: READY; aliases production; not saved; Bento flight-delay:v1")
    assert "datastore   flight_features snapshot 1" in text and "params      test_months=11-12" in text
    assert main(["model", "show", "flight_delay", "1", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["version"] == 1 and data["aliases"] == ["production"] and data["lineage"]["snapshot_id"] == 1
