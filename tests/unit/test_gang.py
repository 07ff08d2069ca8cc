import os
import threading
import time

import pytest

from elearn.compute import GangSpec, Resources
from elearn.compute.local import LocalDriver
from elearn.compute.slots import SlotPool
from elearn.errors import GangTimeout, InvalidInput

PROBE = "tests.unit.gang_probe"


def spec(*args, workers=2, **kw):
    return GangSpec(name="probe", workers=workers, module=PROBE, args=args, resources=Resources(cpu=1), **kw)


def test_spec_validation():
    with pytest.raises(InvalidInput, match="workers must be at least 1"):
        GangSpec(name="g", workers=0, module="m")
    with pytest.raises(InvalidInput, match="gang name 'Bad_Name'"):
        GangSpec(name="Bad_Name", workers=1, module="m")
    with pytest.raises(InvalidInput, match="whole non-negative number"):
        Resources(gpu=0.5)


def test_all_workers_run_and_lines_are_prefixed(elearn_home, tmp_path):
    lines = []
    end = LocalDriver().run(spec("ok", str(tmp_path)), "runs/t", lines.append)
    assert end.status == "succeeded" and end.seconds > 0
    assert "[worker-0] hello from 0 of 2 threads=1 attempt=0" in lines
    assert "[worker-1] hello from 1 of 2 threads=1 attempt=0" in lines
    assert sorted(p.name for p in tmp_path.glob("done-*")) == ["done-0", "done-1"]


def test_one_failing_worker_stops_the_whole_gang(elearn_home, tmp_path):
    driver = LocalDriver()
    started = time.monotonic()
    end = driver.run(spec("fail", str(tmp_path)), "runs/t", lambda line: None)
    assert end.status == "failed" and "worker 1 exited with status 3" in end.message
    assert "[worker-1] about to fail: bad hyperparameter" in end.message
    assert time.monotonic() - started < 30  # worker 0 (sleeping 60 s) was killed
    assert all(p.poll() is not None for p in driver._procs)
    assert not list(tmp_path.glob("done-*"))
    assert driver.slots.in_use() == 0


def test_stop_from_another_thread_tears_the_gang_down(elearn_home):
    driver = LocalDriver()
    timer = threading.Timer(3, driver.stop)
    timer.start()
    end = driver.run(spec("sleep"), "runs/t", lambda line: None)
    assert end.status == "stopped" and "stopped before it finished" in end.message
    assert all(p.poll() is not None for p in driver._procs)


def test_slots_are_all_or_nothing(tmp_path):
    pool = SlotPool(tmp_path / "slots.json", capacity=3)
    pool.acquire("a", 2, timeout_s=1)
    with pytest.raises(GangTimeout, match="waited 0s: 1/3 local slots free, 2 needed"):
        pool.acquire("b", 2, timeout_s=0.2, poll_s=0.05)
    assert pool.in_use() == 2  # b took nothing while waiting
    pool.release("a")
    pool.acquire("b", 2, timeout_s=1)
    with pytest.raises(InvalidInput, match="needs 4 slots but this host has 3"):
        pool.acquire("c", 4, timeout_s=1)


def test_gpus_are_reserved_with_the_slots_and_never_given_twice(tmp_path):
    pool = SlotPool(tmp_path / "slots.json", capacity=8, gpus=4)
    assert pool.acquire("a", 1, timeout_s=1, gpus=3) == [0, 1, 2]
    held, why = pool.try_acquire("b", 1, gpus=2)
    assert held is None and why == "1/4 local GPUs free, 2 needed"
    assert pool.room(1, gpus=2) == (False, "1/4 local GPUs free, 2 needed")
    assert pool.acquire("c", 1, timeout_s=1, gpus=1) == [3]
    pool.release("a")
    assert pool.acquire("b", 1, timeout_s=1, gpus=2) == [0, 1]
    with pytest.raises(InvalidInput, match="needs 5 GPUs but this host has 4; .*AIRFLOW__ELEARN__LOCAL_GPUS"):
        pool.try_acquire("d", 1, gpus=5)


def test_two_gangs_at_once_get_disjoint_gpus(elearn_home, monkeypatch):
    """A host pretending to have 4 GPUs: two 2-worker gangs of 1 GPU per worker run at the same
    time, each worker sees one GPU, and no GPU is seen by two workers."""
    monkeypatch.setenv("AIRFLOW__ELEARN__LOCAL_GPUS", "4")
    gpu_spec = GangSpec(name="probe", workers=2, module=PROBE, args=("hold",), resources=Resources(cpu=1, gpu=1))
    seen: dict[str, list[str]] = {"a": [], "b": []}
    ends = []

    def run(key):
        ends.append(LocalDriver().run(gpu_spec, f"runs/{key}", seen[key].append).status)

    threads = [threading.Thread(target=run, args=(k,)) for k in seen]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert ends == ["succeeded", "succeeded"]
    gpus = [line.split("gpus=")[1].strip("'") for lines in seen.values() for line in lines if "gpus=" in line]
    assert sorted(gpus) == ["0", "1", "2", "3"]


def test_a_gang_asking_more_gpus_than_the_host_has_is_refused(elearn_home, monkeypatch):
    monkeypatch.setenv("AIRFLOW__ELEARN__LOCAL_GPUS", "1")
    driver = LocalDriver()
    with pytest.raises(InvalidInput, match="gang probe needs 2 GPUs but this host has 1"):
        driver.has_room(GangSpec(name="probe", workers=2, module=PROBE, resources=Resources(cpu=1, gpu=1)))


def test_reservations_of_dead_processes_are_dropped(tmp_path):
    import json

    path = tmp_path / "slots.json"
    path.write_text(json.dumps({"ghost": {"pid": 2 ** 22 + 12345, "count": 3, "since": 0}}))
    pool = SlotPool(path, capacity=3)
    pool.acquire("live", 3, timeout_s=0.5)
    assert json.loads(path.read_text())["live"]["pid"] == os.getpid()


def test_stall_watchdog_ends_a_worker_that_makes_no_progress():
    import subprocess
    import sys

    code = ("import time, sys; sys.path.insert(0, 'plugins')\n"
            "from elearn.compute.worker import StallWatchdog\n"
            "w = StallWatchdog(0.6).start()\n"
            "for _ in range(8):\n    time.sleep(0.2); w.beat()\n"  # 1.6 s of progress: still alive
            "print('progressing', flush=True)\n"
            "time.sleep(30)\n")
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 70 and "progressing" in done.stdout
    assert "no training progress for" in done.stdout and time.monotonic() - started < 15


def test_names_with_a_trailing_newline_are_refused(elearn_home, tmp_path):
    """Name patterns ending in ``$`` accept "name\\n" with ``match``; every name check is a full match
    (issue 15, 6): gangs, modules, studies, models, aliases, tags, datastores."""
    from elearn.datastores import register_datastore
    from elearn.objectstore import default_store
    from elearn.registry import get_store
    from elearn.tuning import StudyConfig

    with pytest.raises(InvalidInput, match="gang name"):
        GangSpec(name="probe\n", workers=1, module=PROBE)
    with pytest.raises(InvalidInput, match="is not a Python module path"):
        GangSpec(name="probe", workers=1, module="tests.unit.gang_probe\n")
    with pytest.raises(InvalidInput):
        StudyConfig(name="study\n", space={"x": {"type": "uniform", "low": 0, "high": 1}})
    store = get_store()
    with pytest.raises(InvalidInput):
        store.create_version("model\n", params={}, metrics={}, lineage={}, dag_run_id=None)
    v = store.create_version("model", params={}, metrics={}, lineage={}, dag_run_id=None)
    store.finish_version("model", v.version, artifact_uri="file:///x", files={})
    with pytest.raises(InvalidInput):
        store.set_alias("model", "production\n", v.version, changed_by="test")
    with pytest.raises(InvalidInput):
        store.set_tag("model", v.version, "key\n", "value")
    with pytest.raises(InvalidInput):
        register_datastore("flights\n", tmp_path, objects=default_store(), properties={})
