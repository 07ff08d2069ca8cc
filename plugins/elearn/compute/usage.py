"""Resource use of gang workers: NVML samples on the worker side, one summary per gang run.

Each worker samples its GPUs through NVML (``nvidia-ml-py``) every few seconds —
utilisation and memory of the GPUs it was given — and writes
``<run>/worker-<i>/usage-<attempt>.json`` now and then and when it exits: wall seconds,
GPU-seconds (GPUs held x seconds), mean utilisation, peak memory, and the process's CPU
seconds. Without a GPU (or without NVML) it records ``"gpus": 0`` with the reason and the
CPU time. ``summarise`` adds the files of every worker and attempt up for the registry.
"""

from __future__ import annotations

import atexit
import os
import resource
import threading
import time

SAMPLE_S = 2.0
WRITE_EVERY_S = 30.0


def _nvml_handles() -> tuple[list, str]:
    """NVML handles of this worker's GPUs (``CUDA_VISIBLE_DEVICES``), or ``([], why)``."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and not visible.strip():
        return [], "no GPU assigned to this worker"
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception as e:  # no driver / no library: a CPU-only host
        return [], f"NVML unavailable ({type(e).__name__}: {e})"
    count = pynvml.nvmlDeviceGetCount()
    indices = [int(i) for i in visible.split(",") if i.strip().isdigit()] if visible else list(range(count))
    handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in indices if i < count]
    return handles, "" if handles else "NVML found no GPU"


def _cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


class UsageSampler:
    """Samples in a daemon thread from ``start()`` until ``stop()`` (or interpreter exit)."""

    def __init__(self, ctx, sample_s: float = SAMPLE_S):
        self.ctx, self.sample_s = ctx, sample_s
        self.key = ctx.layout.usage(ctx.index, ctx.attempt)
        self.started = time.time()
        self.handles, self.why = _nvml_handles()
        self.util_sum = 0.0
        self.samples = 0
        self.memory_peak_mb = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="elearn-usage", daemon=True)

    def start(self) -> "UsageSampler":
        self._thread.start()
        atexit.register(self.stop)
        return self

    def _sample(self) -> None:
        import pynvml

        for h in self.handles:
            self.util_sum += pynvml.nvmlDeviceGetUtilizationRates(h).gpu
            self.memory_peak_mb = max(self.memory_peak_mb, pynvml.nvmlDeviceGetMemoryInfo(h).used / 2 ** 20)
        self.samples += len(self.handles)

    def _loop(self) -> None:
        last_write = time.time()
        while not self._stop.wait(self.sample_s):
            if self.handles:
                try:
                    self._sample()
                except Exception as e:  # a GPU that vanished must not kill training
                    self.handles, self.why = [], f"NVML sampling failed ({e})"
            if time.time() - last_write > WRITE_EVERY_S:
                self.write()
                last_write = time.time()

    def report(self) -> dict:
        seconds = time.time() - self.started
        return {"worker": self.ctx.index, "attempt": self.ctx.attempt, "seconds": round(seconds, 3),
                "gpus": len(self.handles), "gpu_seconds": round(seconds * len(self.handles), 3),
                "gpu_util_mean": round(self.util_sum / self.samples, 2) if self.samples else None,
                "gpu_memory_peak_mb": round(self.memory_peak_mb, 1) if self.handles else None,
                "cpu_seconds": round(_cpu_seconds(), 3), "note": self.why}

    def write(self) -> None:
        try:
            self.ctx.store.put_json(self.report(), self.key)
        except Exception:  # reporting is best effort; training goes on
            pass

    def stop(self) -> None:
        if not self._stop.is_set():
            self._stop.set()
            self.write()


def summarise(store, run_prefix: str, workers: int) -> dict:
    """Totals over every worker's and attempt's usage file under ``run_prefix``."""
    from elearn.compute.layout import RunLayout

    layout, reports = RunLayout(run_prefix), []
    for i in range(workers):
        for key in store.list(layout.worker(i)):
            if layout.is_usage(key):
                reports.append(store.get_json(key))
    gpu_seconds = sum(r["gpu_seconds"] for r in reports)
    weighted = [(r["gpu_util_mean"], r["gpu_seconds"]) for r in reports if r.get("gpu_util_mean") is not None]
    util = sum(u * w for u, w in weighted) / sum(w for _, w in weighted) if weighted and sum(
        w for _, w in weighted) else None
    return {"gpu_seconds": round(gpu_seconds, 3), "gpu_util_mean": round(util, 2) if util is not None else None,
            "cpu_seconds": round(sum(r["cpu_seconds"] for r in reports), 3),
            "workers": {f"worker-{r['worker']}/attempt-{r['attempt']}": r for r in reports}}
