"""Folders dropped under a prefix register themselves exactly once (elearn.datastores.incoming),
on a file:// and an s3:// (moto_server) object store."""

from __future__ import annotations

import os
import threading

import pytest

from elearn.errors import DataError
from tests.incoming_folders import PREFIX, drop_folder, flights, objects, snapshots  # noqa: F401 (a fixture)

BY = "incoming_datastore/scheduled__1/register_incoming"
LATER = "incoming_datastore/scheduled__2/register_incoming"  # a later run


def pending(objects, by=LATER):
    from elearn.datastores.incoming import find_pending

    return find_pending("flight_features", objects, PREFIX, by=by)


def register(objects, folders, by=BY, **kw):
    from elearn.datastores.incoming import register_folders

    return register_folders("flight_features", folders, store=objects, by=by, **kw)


def test_a_complete_folder_registers_once_and_the_same_folder_again_is_nothing(objects):
    parts = drop_folder(objects, "2026-12-01", flights(30))
    found = pending(objects)
    assert [f.key for f in found.new] == [f"{PREFIX}/2026-12-01"] and found.registered == 0
    made = register(objects, found.new)
    assert len(made) == 1 and not made[0][1].reused and made[0][1].rows == 30
    history = snapshots()
    assert len(history) == 1 and history[0]["source"] == objects.uri(f"{PREFIX}/2026-12-01")
    assert pending(objects).new == [] and pending(objects).registered == 1

    # the sync copies the very same folder again (new mtimes, same names, sizes and marker)
    data = {key: objects.get_bytes(key) for key in parts}
    objects.delete_prefix(f"{PREFIX}/2026-12-01")
    for key, blob in data.items():
        objects.put_bytes(blob, key)
    objects.put_bytes(b"", f"{PREFIX}/2026-12-01/_SUCCESS")
    again = pending(objects)
    assert again.new == [] and again.registered == 1
    assert len(snapshots()) == 1

    # a changed folder under the same name is a new delivery
    objects.delete_prefix(f"{PREFIX}/2026-12-01")
    drop_folder(objects, "2026-12-01", flights(40))
    changed = pending(objects)
    assert len(changed.new) == 1 and changed.new[0].fingerprint != found.new[0].fingerprint
    assert register(objects, changed.new)[0][1].rows == 40
    assert len(snapshots()) == 2


def test_a_folder_without_its_marker_is_left_alone(objects):
    drop_folder(objects, "half-written", flights(10), marker=None)
    objects.put_bytes(b"stray", f"{PREFIX}/README")  # a file directly under the prefix is no folder
    found = pending(objects)
    assert found.new == [] and found.incomplete == [f"{PREFIX}/half-written"]
    assert "1 without a marker yet (incoming/flight_features/half-written)" in found.summary()
    objects.put_bytes(b"", f"{PREFIX}/half-written/_SUCCESS")  # the sync finishes
    assert [f.key for f in pending(objects).new] == [f"{PREFIX}/half-written"]
    assert snapshots() == []  # looking registers nothing


def test_a_manifest_also_completes_a_folder(objects):
    drop_folder(objects, "landed", flights(10), marker=None)
    objects.put_json({"tables": {}}, f"{PREFIX}/landed/_manifest.json")
    [folder] = pending(objects).new
    assert folder.marker == "_manifest.json"


def test_several_folders_register_oldest_marker_first(elearn_home):
    from elearn.objectstore import default_store

    objects = default_store()
    for name, rows, age_s in (("a", 10, 100), ("b", 20, 300), ("c", 30, 200), ("d", 40, 200)):
        drop_folder(objects, name, flights(rows))
        t = os.path.getmtime(objects.local_path(f"{PREFIX}/{name}/_SUCCESS")) - age_s
        os.utime(objects.local_path(f"{PREFIX}/{name}/_SUCCESS"), (t, t))
    found = pending(objects)
    assert [f.key.rsplit("/", 1)[1] for f in found.new] == ["b", "c", "d", "a"]  # marker time, then name
    made = register(objects, found.new, mode="append")
    assert [s.rows for _, s in made] == [20, 50, 90, 100]  # append: total rows after each
    assert [h["source"].rsplit("/", 1)[1] for h in snapshots()] == ["b", "c", "d", "a"]


def test_two_runs_deciding_at_once_register_a_folder_once(objects):
    drop_folder(objects, "2026-12-01", flights(5))
    register(objects, pending(objects).new)  # the datastore exists: the two runs race on its commit
    drop_folder(objects, "2026-12-02", flights(25))
    runs = ["incoming_datastore/manual__a/register_incoming", "incoming_datastore/manual__b/register_incoming"]
    decided = [pending(objects, by=run).new for run in runs]  # both see it as new
    assert all(len(d) == 1 for d in decided)
    barrier, results, errors = threading.Barrier(2), {}, []

    def run(by, folders):
        try:
            barrier.wait()
            results[by] = register(objects, folders, by=by)
        except Exception as e:  # pragma: no cover - shown by the assertion below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(by, d)) for by, d in zip(runs, decided)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []
    assert len(snapshots()) == 2  # the first folder's and one of this folder
    reported = [made for made in results.values() if made]
    assert len(reported) == 1 and reported[0][0][1].rows == 25  # only the run that made it reports it
    loser = next(by for by, made in results.items() if not made)
    assert register(objects, pending(objects, by=loser).new, by=loser) == []  # a retry of the loser neither
    assert pending(objects).new == [] and len(snapshots()) == 2


def test_a_retried_task_gets_its_own_snapshot_back(objects):
    drop_folder(objects, "2026-12-03", flights(12))
    first = register(objects, pending(objects).new)
    retry = pending(objects, by=BY)  # the same DAG run and task, after a crash before its event was recorded
    assert len(retry.new) == 1
    again = register(objects, retry.new)
    assert again[0][1].reused and again[0][1].snapshot_id == first[0][1].snapshot_id
    assert len(snapshots()) == 1
    assert pending(objects).new == []  # any other run


def test_a_wrong_schema_is_rejected_once_and_does_not_block_later_folders(objects):
    from elearn.datastores.incoming import rejection_key

    drop_folder(objects, "2026-12-04", flights(10))
    register(objects, pending(objects).new)  # the datastore exists with five columns
    drop_folder(objects, "2026-12-05", flights(10, drop=("carrier",)))
    bad = pending(objects).new
    with pytest.raises(DataError, match=r"^incoming folder \S+/2026-12-05 rejected for datastore flight_features: "
                                        r"incompatible schema .*dropped or renamed columns \['carrier'\].*"
                                        r"drop a corrected folder") as err:
        register(objects, bad)
    assert "\n" not in str(err.value)
    assert len(snapshots()) == 1  # no snapshot from the bad folder
    record = objects.get_json(rejection_key("flight_features", f"{PREFIX}/2026-12-05"))
    assert record["fingerprint"] == bad[0].fingerprint and "['carrier']" in record["reason"]

    drop_folder(objects, "2026-12-06", flights(15))  # a later good folder goes through
    later = pending(objects)
    assert [f.key for f in later.new] == [f"{PREFIX}/2026-12-06"]
    assert [f.key for f, _ in later.rejected] == [f"{PREFIX}/2026-12-05"]
    assert register(objects, later.new)[0][1].rows == 15

    objects.delete_prefix(f"{PREFIX}/2026-12-05")  # the sender fixes the folder: tried again
    drop_folder(objects, "2026-12-05", flights(11))
    assert [f.key for f in pending(objects).new] == [f"{PREFIX}/2026-12-05"]


def test_a_refused_folder_after_good_ones_waits_for_the_next_run(elearn_home):
    from elearn.objectstore import default_store

    objects = default_store()
    drop_folder(objects, "1-good", flights(10))
    drop_folder(objects, "2-bad", flights(10, drop=("dest",)))
    drop_folder(objects, "3-good", flights(10))
    for name, age in (("1-good", 30), ("2-bad", 20), ("3-good", 10)):
        path = objects.local_path(f"{PREFIX}/{name}/_SUCCESS")
        os.utime(path, (os.path.getmtime(path) - age,) * 2)
    made = register(objects, pending(objects).new)  # commits up to the problem and reports that
    assert [f.key.rsplit("/", 1)[1] for f, _ in made] == ["1-good"]
    with pytest.raises(DataError, match=r"2-bad rejected .*dropped or renamed columns \['dest'\]"):
        register(objects, pending(objects).new)  # the next run fails on it, making nothing
    assert [f.key.rsplit("/", 1)[1] for f in pending(objects).new] == ["3-good"]
    assert len(snapshots()) == 1


def test_what_is_new_is_decided_holding_the_datastores_lock(elearn_home):
    import time

    from elearn.datastores.dbmodels import lock_datastore
    from elearn.datastores.incoming import find_pending
    from elearn.db import session_scope
    from elearn.objectstore import default_store

    objects = default_store()
    drop_folder(objects, "2026-12-01", flights(5))

    def timed_while_locked(look) -> float:
        """Seconds ``look()`` took while another session held flight_features' lock for 1 s."""
        held, release = threading.Event(), threading.Event()

        def hold():  # an expiry (or a pin) of flight_features deciding at this moment
            with session_scope() as s:
                lock_datastore(s, "flight_features")
                held.set()
                release.wait(10)

        holder = threading.Thread(target=hold)
        holder.start()
        assert held.wait(10)
        threading.Timer(1.0, release.set).start()
        start = time.monotonic()
        assert len(look().new) == 1
        took = time.monotonic() - start
        holder.join(10)
        return took

    assert timed_while_locked(lambda: pending(objects)) >= 0.9  # the decision waits for the lock
    # a trigger's poll only watches for news and never waits (the decision is taken again, locked)
    assert timed_while_locked(lambda: find_pending("flight_features", objects, PREFIX, by=LATER, locked=False)) < 0.9
