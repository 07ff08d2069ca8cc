"""The incoming_datastore DAG's shape: every 10 minutes, one run at a time, no catch-up, params with
defaults for the flight_features sync, the datastore's event through an AssetAlias."""


def test_incoming_dag_polls_every_ten_minutes_one_run_at_a_time(elearn_home):
    from datetime import timedelta

    from airflow.dag_processing.dagbag import DagBag
    from airflow.sdk import AssetAlias

    from testbed import REPO

    bag = DagBag(dag_folder=str(REPO / "dags" / "incoming_datastore.py"))
    assert bag.import_errors == {}
    dag = bag.dags["incoming_datastore"]
    assert dag.timetable.delta == timedelta(minutes=10)
    assert dag.max_active_runs == 1 and dag.catchup is False
    assert {k: dag.params[k] for k in ("prefix", "datastore", "mode")} == {
        "prefix": "incoming/flight_features", "datastore": "flight_features", "mode": "replace"}
    sensor = dag.get_task("register_incoming")
    assert sensor.outlets == [AssetAlias("incoming_datastore")]
    assert (sensor.datastore, sensor.prefix, sensor.mode) == ("{{ params.datastore }}", "{{ params.prefix }}",
                                                              "{{ params.mode }}")
