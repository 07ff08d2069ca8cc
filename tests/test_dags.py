"""Every DAG in dags/ loads into a real DagBag without import errors."""

from tests.conftest import REPO


def test_dagbag_has_no_import_errors(elearn_home):
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(REPO / "dags"))
    assert bag.import_errors == {}
    dag = bag.dags["nightly_retraining"]
    assert [t.task_id for t in dag.topological_sort()] == [
        "land_raw", "preprocess", "register_datastore", "open_study",
        "round_0.ask_trials", "round_0.train", "round_0.tell_round",
        "round_1.ask_trials", "round_1.train", "round_1.tell_round",
        "best_trial_result", "register_model", "package", "release_wanted", "release"]  # 4 trials, 2 per round
    assert dag.params["release"] is False  # a canary needs real traffic: off unless asked for
    assert dag.params["workers"] == 2 and dag.params["train_months"] == "1-10"
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
                             "registry_maintenance", "reproduce_model", "release_model"}
    check = bag.dags["flight_features_check"]
    assert "datastores.flight_features" in repr(check.timetable.asset_condition)
    assert bag.dags["datastore_maintenance"].params["keep_last"] == 5
