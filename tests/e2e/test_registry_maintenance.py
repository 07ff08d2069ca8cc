"""The registry maintenance DAG for real (`airflow dags test`): collects unpinned versions, and
fails loudly when a saved version's artifacts are damaged."""

import json
import subprocess

from testbed import REPO, VENV_BIN, elearn_env


def test_maintenance_collects_and_fails_loudly_on_a_damaged_saved_version(elearn_home, monkeypatch):
    from elearn.objectstore import default_store
    from elearn.registry import SqlAlchemyRegistryStore
    from tests.integration.test_registry_lifecycle import age_versions, publish

    store, objects = SqlAlchemyRegistryStore(), default_store()
    for run in ("a", "b", "c"):
        publish((store, objects), run=run)
    store.save_version("m", 1, by="ana", reason="baseline")
    store.set_alias("m", "production", 2)
    env = {**elearn_env(elearn_home), "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags")}
    subprocess.run([str(VENV_BIN / "airflow"), "db", "migrate"], env=env, capture_output=True, check=True, timeout=300)

    def maintenance(ttl_days=1):
        return subprocess.run([str(VENV_BIN / "airflow"), "dags", "test", "registry_maintenance", "-c",
                               json.dumps({"ttl_days": ttl_days})], env=env, capture_output=True, text=True,
                              timeout=600)

    too_short = maintenance(ttl_days=0)  # would take what running training still needs
    assert too_short.returncode != 0
    assert [store.get_version("m", v).status for v in (1, 2, 3)] == ["READY"] * 3
    age_versions(days=2)
    healthy = maintenance()
    assert healthy.returncode == 0, healthy.stdout[-3000:] + healthy.stderr[-3000:]
    assert [store.get_version("m", v).status for v in (1, 2, 3)] == ["READY", "READY", "COLLECTED"]
    objects.put_bytes(b"bitrot", "models/m/v1/model.keras")
    damaged = maintenance()
    text = damaged.stdout + damaged.stderr
    assert damaged.returncode != 0
    assert "1 saved or aliased model versions are missing or damaged: m v1" in text
