"""Publishing large models: files are streamed a chunk at a time, the writer's lease is kept
fresh through one long copy, and a copy that fails is reported as itself."""

import errno
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from elearn.objectstore import CHUNK, ObjectStore, sha256_file
from elearn.registry import SqlAlchemyRegistryStore, publish_version
from elearn.registry import publish as publishing
from elearn.registry import sqlalchemy_store

SOURCE = "runs/big/r/model"


class Disk:
    """An output stream that calls ``on_write(start, end)`` with the byte range of each write
    before it passes the bytes on."""

    def __init__(self, f_out, on_write):
        self.f_out, self.on_write, self.written = f_out, on_write, 0

    def write(self, block):
        self.on_write(self.written, self.written + len(block))
        self.written += len(block)
        return self.f_out.write(block)


@dataclass(frozen=True)
class SlowDiskStore(ObjectStore):
    """The local object store on a disk that may be slow, fill up, or let a cleanup run in the
    middle of a copy (``on_write``, see ``Disk``)."""

    on_write: Callable[[int, int], None] = lambda start, end: None

    def _write(self, target, write):
        return super()._write(target, lambda f_out: write(Disk(f_out, self.on_write)))


def publish(registry, objects):
    return publish_version(registry, objects, "big", SOURCE, params={}, metrics={}, lineage={}, dag_run_id="r")


def stage(tmp_path, objects, size):
    """A sparse source file of ``size`` bytes at ``SOURCE/model.bin``; its sha256."""
    local = tmp_path / "model.bin"
    with open(local, "wb") as f:
        f.truncate(size)
    objects.put_file(local, f"{SOURCE}/model.bin")
    return sha256_file(local)


def test_a_file_larger_than_memory_allows_is_streamed(store, elearn_home, tmp_path):
    objects, size = store, 64 * CHUNK  # a local store, then S3 on moto_server
    expected = stage(tmp_path, objects, size)
    registry = SqlAlchemyRegistryStore()
    registry.list_versions("big")  # the database is set up (and its modules imported) before measuring
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        mv = publish(registry, objects)
        peak = tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()
    assert mv.status == "READY" and mv.files == {"model.bin": {"sha256": expected, "size": size}}
    assert objects.sha256("models/big/v1/model.bin") == expected and objects.size("models/big/v1/model.bin") == size
    assert peak < size / 8, f"publishing a {size // CHUNK} MiB file held {peak / CHUNK:.1f} MiB at its peak"


def test_the_lease_is_renewed_during_one_long_copy_so_cleanup_never_fails_it(elearn_home, tmp_path, monkeypatch):
    registry = SqlAlchemyRegistryStore()
    monkeypatch.setattr(sqlalchemy_store, "WRITER_LEASE_S", 1.0)
    monkeypatch.setattr(publishing, "RENEW_EVERY_S", 0.1, raising=False)
    stage(tmp_path, ObjectStore(f"file://{tmp_path}/store"), 20 * CHUNK)
    failed_by_cleanup, renewed_mid_copy = [], []

    def slow_disk_while_cleanup_runs(start, end):  # 0.1 s a MiB: the file takes twice the lease
        time.sleep(0.1 * (end - start) / CHUNK)
        failed_by_cleanup.extend(registry.fail_abandoned())

    objects = SlowDiskStore(f"file://{tmp_path}/store", on_write=slow_disk_while_cleanup_runs)
    renew = registry.renew_lease

    def renew_and_note(model_name, version):
        renewed_mid_copy.append(not objects.exists(f"models/big/v{version}/model.bin"))
        renew(model_name, version)

    monkeypatch.setattr(registry, "renew_lease", renew_and_note)
    mv = publish(registry, objects)
    assert mv.status == "READY" and mv.files["model.bin"]["size"] == 20 * CHUNK
    assert failed_by_cleanup == []
    assert renewed_mid_copy.count(True) >= 5, renewed_mid_copy


def test_a_copy_that_fails_mid_file_reports_the_copy_error_even_after_the_lease_was_lost(
        elearn_home, tmp_path, monkeypatch):
    registry = SqlAlchemyRegistryStore()
    stage(tmp_path, ObjectStore(f"file://{tmp_path}/store"), 8 * CHUNK)
    lease_lost = False

    def disk_fills_up(start, end):
        if lease_lost and start <= 2 * CHUNK < end:
            # meanwhile the writer's lease lapsed and a cleanup failed the version
            assert [mv.version for mv in registry.fail_abandoned()] == [2]
        if end > 4 * CHUNK:
            raise OSError(errno.ENOSPC, "No space left on device")

    objects = SlowDiskStore(f"file://{tmp_path}/store", on_write=disk_fills_up)
    with pytest.raises(OSError, match="No space left on device"):
        publish(registry, objects)
    first = registry.get_version("big", 1)
    assert first.status == "FAILED" and first.status_message == "publishing failed: [Errno 28] No space left on device"

    monkeypatch.setattr(sqlalchemy_store, "WRITER_LEASE_S", -1.0)  # every lease has lapsed at once
    lease_lost = True
    with pytest.raises(OSError, match="No space left on device"):  # not the Conflict of failing it again
        publish(registry, objects)
    second = registry.get_version("big", 2)
    # the cleanup's reason stands: a FAILED version is not failed again
    assert second.status == "FAILED" and "stopped before the version was complete" in second.status_message
