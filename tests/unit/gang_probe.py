"""A tiny gang worker for driver tests: prints, optionally fails or sleeps."""

import json
import os
import sys
import time

if __name__ == "__main__":
    index = int(os.environ["ELEARN_WORKER_INDEX"])
    tf_config = json.loads(os.environ["TF_CONFIG"])
    print(f"hello from {index} of {len(tf_config['cluster']['worker'])} threads={os.environ['OMP_NUM_THREADS']}",
          flush=True)
    mode = sys.argv[1] if len(sys.argv) > 1 else "ok"
    if mode == "fail" and index == 1:
        print("about to fail: bad hyperparameter", flush=True)
        sys.exit(3)
    if mode in ("fail", "sleep"):
        time.sleep(60)
    with open(os.path.join(sys.argv[2], f"done-{index}"), "w") if len(sys.argv) > 2 else open(os.devnull, "w") as f:
        f.write("ok")
