"""Release a registered version gradually: quality gate, canary beside production, live gates.

Trigger with {"model_name": …, "version": N, "weight": 10}; the version's Bento is built
if it has none. Promotion or rollback happens when the gates decide (the task defers meanwhile).
"""

from __future__ import annotations

import pendulum
from airflow.sdk import Param, dag

from operators import BuildBentoOperator, CanaryReleaseOperator


@dag(
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["elearn", "serving"],
    render_template_as_native_obj=True,
    params={"model_name": Param("flight_delay", type="string"),
            "version": Param(1, type="integer", minimum=1),
            "weight": Param(10, type="integer", minimum=1, maximum=99, description="percent of traffic for the canary"),
            "force": Param(False, type="boolean", description="release a version that is not saved"),
            "gates": Param({}, type="object", description="overrides of the gates, e.g. {\"min_requests\": 500, "
                                                          "\"auc_margin\": 0.01}")},
)
def release_model():
    package = BuildBentoOperator(task_id="package", reuse=True,
                                 model_version={"model_name": "{{ params.model_name }}",
                                                "version": "{{ params.version }}"})
    CanaryReleaseOperator(task_id="release", model_version=package.output, weight="{{ params.weight }}",
                          gates="{{ params.gates }}", force="{{ params.force }}")


release_model()
