"""A tuning DAG over the tiny trial program (tests.unit.trial_probe): 4 trials, 2 per round
(ELEARN_PROBE_MAX_TRIALS / ELEARN_PROBE_PARALLELISM change that when the DAG is parsed)."""

import os

import pendulum
from airflow.sdk import Param, dag

from operators.tuning import tuning_rounds

STUDY = {"space": {"learning_rate": {"type": "loguniform", "low": 1e-4, "high": 1e-1},
                   "hidden_units": {"type": "choice", "options": [16, 64]}},
         "metric": "val_auc", "parallelism": int(os.environ.get("ELEARN_PROBE_PARALLELISM", "2")),
         "max_trials": int(os.environ.get("ELEARN_PROBE_MAX_TRIALS", "4")), "n_startup_jobs": 2,
         "early_stopping": None}


@dag(schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False, tags=["elearn", "test"],
     render_template_as_native_obj=True,
     params={"study_name": Param("probe", type="string"), "epoch_seconds": Param(2.0, type="number"),
             "epochs": Param(3, type="integer")})
def tuning_probe():
    tuning_rounds(study_name="{{ params.study_name }}", study=STUDY,
                  train=dict(module="tests.unit.trial_probe", workers=1,
                             job_args=["--epochs", "{{ params.epochs }}", "--epoch-seconds", "{{ params.epoch_seconds }}"]))


tuning_probe()
