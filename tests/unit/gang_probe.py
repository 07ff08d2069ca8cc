"""A tiny gang worker for driver tests: prints, optionally fails or sleeps.

Modes: ok, fail (worker 1 exits 3 at once), sleep, hold (1.5 s), quiet (a WorkerContext, then 60 s without output), flaky (worker 1 exits 3 on the first
attempt only), usage (reports resource use like a training program does).
"""

import json
import os
import sys
import time

if __name__ == "__main__":
    index = int(os.environ["ELEARN_WORKER_INDEX"])
    attempt = int(os.environ.get("ELEARN_ATTEMPT", "0"))
    tf_config = json.loads(os.environ["TF_CONFIG"])
    print(f"hello from {index} of {len(tf_config['cluster']['worker'])} threads={os.environ['OMP_NUM_THREADS']} "
          f"attempt={attempt}", flush=True)
    print(f"gpus={os.environ.get('CUDA_VISIBLE_DEVICES')!r}", flush=True)
    mode = sys.argv[1] if len(sys.argv) > 1 else "ok"
    if mode == "usage":
        from elearn.compute.usage import UsageSampler
        from elearn.compute.worker import WorkerContext

        sampler = UsageSampler(WorkerContext.from_env(), sample_s=0.05).start()
        deadline = time.process_time() + 0.3
        while time.process_time() < deadline:  # burn a little CPU to be measured
            pass
        sampler.stop()
    if (mode == "fail" or mode == "flaky" and attempt == 0) and index == 1:
        print("about to fail: bad hyperparameter", flush=True)
        sys.exit(3)
    if mode == "quiet":  # a worker of the platform that trains without printing
        from elearn.compute.worker import WorkerContext

        WorkerContext.from_env()
        print("training quietly", flush=True)
        time.sleep(60)
    if mode in ("fail", "sleep"):
        time.sleep(60)
    if mode == "hold":  # a while, so that gangs started together overlap
        time.sleep(1.5)
    with open(os.path.join(sys.argv[2], f"done-{index}"), "w") if len(sys.argv) > 2 else open(os.devnull, "w") as f:
        f.write("ok")
