"""Every DAG in dags/ loads into a real DagBag without import errors."""

from testbed import REPO


def test_dagbag_has_no_import_errors(elearn_home):
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(REPO / "dags"))
    assert bag.import_errors == {}
    dag = bag.dags["nightly_retraining"]
    assert [t.task_id for t in dag.topological_sort()] == [
        "land_raw", "preprocess", "register_datastore", "training_wanted", "open_study",
        "round_0.ask_trials", "round_0.train", "round_0.tell_round",
        "round_1.ask_trials", "round_1.train", "round_1.tell_round",
        "best_trial_result", "register_model", "package", "release_wanted", "release"]  # 4 trials, 2 per round
    assert dag.params["release"] is False  # a canary needs real traffic: off unless asked for
    assert dag.params["workers"] == 2 and dag.params["train_months"] == "1-10"
    assert dag.params["retrain_if"] == "always"  # today's behaviour unless asked for drift or schedule
    # the cron, or a drift check's retraining request, whichever comes first
    assert "retraining.flight_delay" in repr(dag.timetable.asset_condition)
    assert dag.timetable.timetable.expression == "0 2 * * *"
    register = dag.get_task("register_datastore")
    assert [a.name for a in register.outlets] == ["datastores.flight_features"]
    # GPUs and the team's quota come from the trigger form, for every trial of every round
    assert (dag.params["gpu"], dag.params["team"]) == (0, "default")
    for r in (0, 1):
        train = dag.get_task(f"round_{r}.train").partial_kwargs
        assert (train["gpu"], train["team"]) == ("{{ params.gpu }}", "{{ params.team }}")


def test_data_triggered_and_maintenance_dags(elearn_home):
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(REPO / "dags"))
    assert set(bag.dags) == {"nightly_retraining", "flight_features_check", "datastore_maintenance",
                             "registry_maintenance", "reproduce_model", "release_model", "score_flights",
                             "incoming_datastore", "live_quality", "land_flight_labels", "drift_check"}
    check = bag.dags["flight_features_check"]
    assert "datastores.flight_features" in repr(check.timetable.asset_condition)
    live = bag.dags["live_quality"]  # labels landing (or new predictions) start it, one run at a time
    condition = repr(live.timetable.asset_condition)
    assert "datastores.flight_labels" in condition and "datastores.flight_delay_predictions" in condition
    assert live.max_active_runs == 1 and live.params["margin"] == 0.05
    assert [a.name for a in bag.dags["land_flight_labels"].get_task("land_labels").outlets] == [
        "datastores.flight_labels"]
    assert bag.dags["datastore_maintenance"].params["keep_last"] == 5
    drift = bag.dags["drift_check"]  # each new snapshot of flight_features; a drifted one asks for a retraining
    assert "datastores.flight_features" in repr(drift.timetable.asset_condition)
    assert [a.name for a in drift.get_task("request_retraining").outlets] == ["retraining.flight_delay"]
    score = bag.dags["score_flights"]  # each new snapshot of flight_features is scored, one run at a time
    assert "datastores.flight_features" in repr(score.timetable.asset_condition) and score.max_active_runs == 1
    assert [a.name for a in score.get_task("score").outlets] == ["datastores.flight_delay_predictions"]
    assert score.params["version"] == "production"
