"""Where a gang run keeps its files in the object store: named once, read and written through here.

::

    runs/<dag_id>/<dag run>/<task>[/<map index>]/try-<n>/     a gang task's run prefix
        worker-<i>/metrics.jsonl     per-epoch metrics of worker i (the chief's feed the study)
        worker-<i>/heartbeat.json    the worker's last sign of life
        worker-<i>/usage-<a>.json    what worker i used in attempt a (NVML, CPU)
        checkpoint/                  the gang's checkpoints, shared by every attempt
        model/                       the trained model the chief wrote; model/metrics.json its scores
    reproductions/<model>/v<version>/<time>/   a reproduction's run prefix, same layout

Workers (no Airflow, no database) and the platform (operators, triggers, registry) share it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

CHECKPOINT_DIR = "checkpoint"
MODEL_DIR = "model"


def run_dir_name(run_id: str) -> str:
    """A DAG run id as one path segment (``manual__2026-01-01T00:00:00+00:00`` keeps its shape);
    leading dots become ``_``, so no run id (``..``, say) names a folder above its DAG's."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", run_id)
    return re.sub(r"^\.+", lambda m: "_" * len(m.group()), name) or "_"


@dataclass(frozen=True)
class RunLayout:
    """The files of one gang run under ``prefix``."""

    prefix: str

    @classmethod
    def for_task(cls, dag_id: str, run_id: str, task_id: str, try_number: int, map_index: int | None = -1) -> "RunLayout":
        task = task_id if map_index is None or map_index < 0 else f"{task_id}/{map_index}"
        return cls(f"runs/{dag_id}/{run_dir_name(run_id)}/{task}/try-{try_number}")

    def worker(self, index: int) -> str:
        return f"{self.prefix}/worker-{index}"

    def metrics(self, index: int) -> str:
        return f"{self.worker(index)}/metrics.jsonl"

    def heartbeat(self, index: int) -> str:
        return f"{self.worker(index)}/heartbeat.json"

    def usage(self, index: int, attempt: int) -> str:
        return f"{self.worker(index)}/usage-{attempt}.json"

    @staticmethod
    def is_usage(key: str) -> bool:
        name = key.rsplit("/", 1)[-1]
        return name.startswith("usage-") and name.endswith(".json")

    @property
    def checkpoints(self) -> str:
        return f"{self.prefix}/{CHECKPOINT_DIR}"

    @property
    def model(self) -> str:
        return f"{self.prefix}/{MODEL_DIR}"

    @property
    def model_metrics(self) -> str:
        return f"{self.model}/metrics.json"

    def read_metrics(self, store, index: int = 0) -> list[dict]:
        """The per-epoch records worker ``index`` wrote so far (none before its first epoch)."""
        key = self.metrics(index)
        if not store.exists(key):
            return []
        return [json.loads(line) for line in store.get_bytes(key).decode().splitlines() if line.strip()]
