"""Daily registry maintenance: collect old unpinned model versions, then verify every saved or
aliased one and fail loudly if any is missing or damaged."""

from __future__ import annotations

import pendulum
from airflow.sdk import Param, dag, task


@dag(
    schedule="0 4 * * *",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["elearn", "maintenance"],
    params={"ttl_days": Param(14, type="number", minimum=1,
                              description="unsaved, un-aliased versions (and training outputs) older than this "
                                          "lose their artifacts; 1 day at least")},
)
def registry_maintenance():
    @task
    def collect_garbage(params=None):
        from datetime import timedelta

        from elearn.objectstore import default_store
        from elearn.registry import get_store
        from elearn.registry.gc import check_ttl
        from elearn.registry.gc import collect_garbage as collect
        from operators.connections import export_aws_credentials

        export_aws_credentials()
        ttl = timedelta(days=params["ttl_days"])
        check_ttl(ttl)  # also when the run's conf skipped the form's validation
        report = collect(get_store(), default_store(), ttl=ttl)
        print(f"collected {len(report.collected)} versions ({report.bytes_freed} bytes), kept "
              f"{len(report.kept_saved)} saved and {len(report.kept_aliased)} aliased; kept "
              f"{len(report.run_folders_kept_live)} run folders of gangs still running")
        return report.__dict__

    @task
    def verify_pinned():
        from elearn.errors import DataError
        from elearn.objectstore import default_store
        from elearn.registry import get_store
        from elearn.registry.gc import verify_pinned as verify
        from operators.connections import export_aws_credentials

        export_aws_credentials()
        reports = verify(get_store(), default_store())
        bad = [r for r in reports if not r.healthy]
        for r in bad:
            print(f"DAMAGED {r.model_name} v{r.version}: missing {r.missing}, corrupt {r.corrupt}, bento {r.bento!r}")
        if bad:
            names = ", ".join(f"{r.model_name} v{r.version}" for r in bad)
            raise DataError(f"{len(bad)} saved or aliased model versions are missing or damaged: {names}; "
                            f"restore their artifacts from a backup")
        return {"verified": len(reports), "bytes": sum(r.bytes for r in reports)}

    collect_garbage() >> verify_pinned()


registry_maintenance()
