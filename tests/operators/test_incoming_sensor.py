"""IncomingDatastoreSensor in-process: defers on an empty prefix, registers a folder once its
marker lands (one event on the datastore's Asset), fails a wrong schema naming the column."""

from __future__ import annotations

import threading

import pytest
from airflow.sdk.exceptions import AirflowSkipException, TaskDeferred

from elearn.errors import DataError, InvalidInput
from tests.incoming_folders import PREFIX, drop_folder, flights, objects, snapshots  # noqa: F401 (a fixture)
from tests.operators.gang_tasks import fire


def make_sensor(outlets=None, **kw):
    from airflow.sdk import DAG, AssetAlias

    from operators import IncomingDatastoreSensor

    with DAG("incoming_probe", schedule=None):
        return IncomingDatastoreSensor(task_id="register_incoming", datastore="flight_features", prefix=PREFIX,
                                       poll_interval_s=0.05, timeout_s=kw.pop("timeout_s", 30),
                                       outlets=outlets if outlets is not None else [AssetAlias("incoming_probe")],
                                       **kw)


def context(run_id="scheduled__1"):
    from airflow.sdk.execution_time.context import OutletEventAccessors

    return {"run_id": run_id, "outlet_events": OutletEventAccessors()}


def events(ctx) -> list[dict]:
    """The asset events the task would hand Airflow on success."""
    from airflow.sdk.execution_time.task_runner import _serialize_outlet_events

    return list(_serialize_outlet_events(ctx["outlet_events"]))


def test_an_empty_prefix_defers_then_the_run_is_skipped_without_an_event(elearn_home):
    op, ctx = make_sensor(timeout_s=0.3), context()
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(ctx)
    assert deferred.value.method_name == "execute_complete"
    event = fire(deferred.value.trigger)
    assert event["status"] == "timeout"
    with pytest.raises(AirflowSkipException, match="no new complete folder under incoming/flight_features"):
        op.execute_complete(ctx, event=event)
    assert events(ctx) == [] and snapshots() == []


def test_a_folder_registers_when_its_marker_lands_with_one_event(objects):
    drop_folder(objects, "2026-12-01", flights(30), marker=None)  # still being written
    op, ctx = make_sensor(), context()
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(ctx)
    threading.Timer(0.3, objects.put_bytes, args=(b"", f"{PREFIX}/2026-12-01/_SUCCESS")).start()
    event = fire(deferred.value.trigger)
    assert event == {"status": "found", "folders": [f"{PREFIX}/2026-12-01"]}
    result = op.execute_complete(ctx, event=event)
    [snap] = snapshots()
    assert result["snapshot_id"] == snap["snapshot_id"] and result["registered"] == 1 and result["rows"] == 30
    [emitted] = events(ctx)
    assert emitted["source_alias_name"] == "incoming_probe"
    assert emitted["dest_asset_key"]["name"] == "datastores.flight_features"
    assert {"datastore": "flight_features", "snapshot_id": snap["snapshot_id"], "rows": 30,
            "source": objects.uri(f"{PREFIX}/2026-12-01")}.items() <= emitted["extra"].items()

    again, ctx2 = make_sensor(timeout_s=0.2), context("scheduled__2")  # the next run: nothing new
    with pytest.raises(TaskDeferred) as deferred:
        again.execute(ctx2)
    assert fire(deferred.value.trigger)["status"] == "timeout"
    assert len(snapshots()) == 1 and events(ctx2) == []


def test_a_wrong_schema_fails_the_task_naming_the_column_and_later_runs_skip_it(elearn_home):
    from airflow.sdk import Asset

    from elearn.objectstore import default_store
    from operators.assets import datastore_asset

    objects = default_store()
    drop_folder(objects, "2026-12-01", flights(10))
    ctx = context()
    make_sensor(outlets=[datastore_asset("flight_features")]).execute(ctx)  # found at once: no deferral
    assert len(snapshots()) == 1 and events(ctx)[0]["extra"]["rows"] == 10

    drop_folder(objects, "2026-12-02", flights(10, drop=("delayed",)))
    with pytest.raises(DataError, match=r"2026-12-02 rejected for datastore flight_features: .*"
                                        r"dropped or renamed columns \['delayed'\]"):
        make_sensor().execute(context("scheduled__2"))
    assert len(snapshots()) == 1

    later, warned = make_sensor(), []
    later.log.warning = lambda msg, *args: warned.append(msg % args)
    with pytest.raises(TaskDeferred):  # the next run does not try it again, and says why
        later.execute(context("scheduled__3"))
    [warning] = [w for w in warned if w.startswith("skipping")]  # (Airflow warns of running outside a task too)
    assert warning.startswith(f"skipping {objects.uri(PREFIX)}/2026-12-02: rejected at 20")
    assert "['delayed']" in warning and "rejections/flight_features/incoming/flight_features/2026-12-02.json" in warning
    with pytest.raises(InvalidInput, match="outlet datastores.other is not the Asset of datastore flight_features"):
        make_sensor(outlets=[Asset(name="datastores.other", uri="iceberg://elearn/datastores/other")]).execute(
            context("scheduled__4"))
