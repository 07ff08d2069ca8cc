"""Two processes writing at once on PostgreSQL: both datastore commits land, no version is lost."""

import json
import os
import subprocess
import sys
import time

import pyarrow as pa
import pyarrow.parquet as pq

from testbed import REPO

ROUNDS = 3
COMMIT = """
import json, logging, sys, time
logging.basicConfig(level=logging.WARNING)
from pathlib import Path
from elearn.datastores import register_datastore
from elearn.objectstore import default_store
start, folder, run = float(sys.argv[1]), sys.argv[2], sys.argv[3]
out = []
for k in range(%d):
    while time.time() < start + 3 * k:  # both processes commit at the same instants
        time.sleep(0.001)
    snap = register_datastore("shared", Path(folder), objects=default_store(),
                              properties={"dag_id": "d", "dag_run_id": f"{run}-{k}", "task_id": "register"})
    out.append({"snapshot_id": snap.snapshot_id, "rows": snap.rows})
print(json.dumps(out))
""" % ROUNDS

VERSIONS = """
import json, sys, time
from elearn.registry import get_store
start = float(sys.argv[1])
store = get_store()
store.list_versions("m")  # connect and migrate before the start line
while time.time() < start:
    time.sleep(0.001)
print(json.dumps([store.create_version("m", params={}, metrics={}, lineage={}, dag_run_id=sys.argv[2]).version
                  for _ in range(10)]))
"""


def run_together(script: str, args_per_process: list[list[str]]) -> list:
    start = time.time() + 8  # both interpreters are up and connected before this instant
    procs = [subprocess.Popen([sys.executable, "-c", script, str(start), *args], cwd=REPO, env=dict(os.environ),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for args in args_per_process]
    outs = [p.communicate(timeout=180) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
    return [json.loads(out.strip().splitlines()[-1]) for out, _ in outs]


def test_two_dag_runs_commit_to_one_datastore_at_once(postgres_url, tmp_path):
    from elearn.datastores import get_catalog, read_arrow
    from elearn.datastores.history import snapshot_history

    folders = []
    for run, n in (("run-a", 100), ("run-b", 70)):
        folder = tmp_path / run
        folder.mkdir()
        pq.write_table(pa.table({"run": [run] * n, "i": pa.array(range(n), pa.int64())}), folder / "part-0.parquet")
        folders.append([str(folder), run])
    per_process = run_together(COMMIT, folders)
    ids = {r["snapshot_id"] for results in per_process for r in results}
    assert len(ids) == 2 * ROUNDS  # every commit landed as its own snapshot
    table = get_catalog().load_table("datastores.shared")
    assert ids <= {s.snapshot_id for s in table.snapshots()}
    for results, (_, run) in zip(per_process, folders):
        for result in results:
            rows = read_arrow("shared", result["snapshot_id"])
            # a replace holds exactly its own output, also when it lost a race and was retried
            assert set(rows.column("run").to_pylist()) == {run}
    assert table.current_snapshot().snapshot_id in ids
    assert {h["snapshot_id"] for h in snapshot_history("shared") if h["dag_run_id"]} == ids


def test_two_processes_registering_versions_get_distinct_numbers(postgres_url):
    a, b = run_together(VERSIONS, [["a"], ["b"]])
    assert sorted(a + b) == list(range(1, 21))
