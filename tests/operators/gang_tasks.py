"""Helpers for gang task tests: a GangTrainingOperator in a DAG, the context Airflow hands it,
and a trigger run to its one event."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace


def make_op(**kw):
    from airflow.sdk import DAG

    from operators import GangTrainingOperator

    with DAG("gang_deferral_dag", schedule=None):
        return GangTrainingOperator(task_id="train", module="tests.unit.gang_probe", poll_interval_s=0.05,
                                    kubernetes_conn_id="kube_emu", **kw)


def context(try_number=1, op=None):
    """What Airflow hands the task: the pod labels KubernetesPodOperator builds come from it."""
    ti = SimpleNamespace(try_number=try_number, dag_id="gang_deferral_dag", task_id="train", map_index=-1)
    return {"run_id": "manual__deferral", "ti": ti, "dag": op.dag if op is not None else None}


def fire(trigger):
    """Run a trigger to its one event, as the triggerer would (after a serialize round trip)."""
    import importlib

    path, kwargs = trigger.serialize()
    module, name = path.rsplit(".", 1)
    trigger = getattr(importlib.import_module(module), name)(**kwargs)

    async def first():
        async for event in trigger.run():
            return event.payload

    return asyncio.run(first())
