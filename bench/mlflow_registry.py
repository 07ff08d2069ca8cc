"""MLflow's model registry under the calls ``bench_registry`` makes of elearn's: run by the
interpreter of the bench-only venv ``bench/.venv-peers`` (MLflow pinned in ``bench/requirements-peers.txt``,
never in the project's venv), on a database of its own. Prints one JSON object: milliseconds per
call, per operation, for MLflow's ``SqlAlchemyStore`` and for ``MlflowClient`` over it.

    bench/.venv-peers/bin/python bench/mlflow_registry.py --db-uri sqlite:////tmp/mlflow.db --versions 10000

Imports MLflow only (not elearn): the two never share a process or a venv.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import sys
import time
import warnings


def timed(fn, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def fill(store, n: int) -> None:
    """Model ``m`` with ``n`` READY versions, as ``create_model_version`` leaves them (inserted in
    bulk through MLflow's own ORM rows, 1,000 per flush: setup, not timed)."""
    from mlflow.entities.model_registry.model_version_status import ModelVersionStatus
    from mlflow.store.model_registry.dbmodels.models import SqlModelVersion, SqlModelVersionTag

    store.create_registered_model("m")
    now = int(time.time() * 1000)
    with store.ManagedSessionMaker(read_only=False) as session:
        for start in range(1, n + 1, 1000):
            for v in range(start, min(start + 1000, n + 1)):
                source = f"models:/m-{v:08x}"  # a logged model, as MLflow 3 registers them
                session.add(SqlModelVersion(
                    name="m", version=v, creation_time=now - (n - v) * 60_000, last_updated_time=now - (n - v) * 60_000,
                    source=source, storage_location=f"file:///mlruns/1/models/m-{v:08x}/artifacts",
                    run_id=f"{v:032x}", status=ModelVersionStatus.to_string(ModelVersionStatus.READY)))
                session.add(SqlModelVersionTag(name="m", version=v, key="dag_run_id", value=f"scheduled__{v}"))
            session.flush()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--db-uri", required=True)
    p.add_argument("--versions", type=int, default=10_000)
    p.add_argument("--list-repeats", type=int, default=10)
    a = p.parse_args(argv)
    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)

    from mlflow import MlflowClient
    from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore

    t0 = time.perf_counter()
    store = SqlAlchemyStore(a.db_uri)  # creates MLflow's tables (its Alembic migrations)
    fill(store, a.versions)
    client = MlflowClient(tracking_uri=a.db_uri, registry_uri=a.db_uri)
    setup_s = time.perf_counter() - t0
    n, rng = a.versions, random.Random(7)
    newest_first = ["version_number DESC"]
    created = []

    def register(api):
        # an artifact URI: MLflow 3.17 resolves a models:/ source to a logged model, which has no run here
        created.append(int(api.create_model_version("m", f"s3://models/m-new{len(created)}", run_id=None).version))

    results = {}
    for label, api in (("store", store), ("client", client)):
        api.search_model_versions("name='m'", max_results=100, order_by=newest_first)  # warm
        ops = {
            "list all versions": timed(lambda: api.search_model_versions("name='m'", max_results=200_000,
                                                                         order_by=newest_first), a.list_repeats),
            "list a page of 100": timed(lambda: api.search_model_versions("name='m'", max_results=100,
                                                                          order_by=newest_first), 200),
            "get a version": timed(lambda: api.get_model_version("m", str(rng.randint(1, n))), 300),
            "register a version": timed(lambda: register(api), 100),
            "set an alias": timed(lambda: api.set_registered_model_alias("m", "candidate", str(rng.randint(1, n))),
                                  100),
        }
        results[label] = ops
    listed = len(store.search_model_versions("name='m'", max_results=200_000))
    assert listed == n + len(created), (listed, n, len(created))
    import mlflow

    json.dump({"mlflow": mlflow.__version__, "setup_s": setup_s, "results": results}, sys.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
