"""Retrain a registered model version from its lineage (same snapshot, code, arguments) and
report how close the new metrics are: trigger with {"model_name": …, "version": N}."""

from __future__ import annotations

import pendulum
from airflow.sdk import Param, dag, task


@dag(
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["elearn", "registry"],
    params={"model_name": Param("flight_delay", type="string"),
            "version": Param(1, type="integer", minimum=1),
            "force": Param(False, type="boolean", description="retrain even if the training code changed")},
)
def reproduce_model():
    @task
    def reproduce(params=None):
        from elearn.registry.reproduce import reproduce as retrain
        from operators.connections import export_aws_credentials

        export_aws_credentials()
        result = retrain(params["model_name"], int(params["version"]), force=params["force"])
        for k, d in result.differences.items():
            print(f"{k}: original {result.original[k]:.4f}, reproduced {result.reproduced[k]:.4f}, "
                  f"difference {d:+.4f}")
        return result.__dict__

    reproduce()


reproduce_model()
