"""Flight-delay classifier, trained by a gang under MultiWorkerMirroredStrategy.

Run by a gang driver as ``python -m training_jobs.train_flights ARGS`` with TF_CONFIG and
the ELEARN_* variables set (elearn.compute.worker). Reads the datastore by table name and
snapshot id, trains on ``--train-months`` with a custom loop (Keras 3 ``fit`` does not work
under MultiWorkerMirroredStrategy), and the chief writes the model, its feature spec,
lookup tables and held-out metrics under ``<run prefix>/model/``.

After every epoch the chief saves the weights, the optimizer state and the step to the run's
checkpoint folder in the object store. After a gang restart (``ELEARN_ATTEMPT`` > 0) every
worker loads the latest checkpoint and resumes from its step, so the run trains exactly the
steps of an uninterrupted one. A worker that makes no progress for ``--stall-timeout-s`` (a
peer died in the middle of a collective) exits instead of hanging.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np

from elearn.compute.usage import UsageSampler
from elearn.compute.worker import MetricsLog, StallWatchdog, WorkerContext
from elearn.datastores.reading import read_arrow
from elearn.datastores.reading import from_worker_env
from elearn.features.flights import CATEGORICAL_FEATURES, LABEL, NUMERIC_FEATURES, FeatureSpec, Lookups, months

MODEL_FILE = "model.keras"
CHUNK_STEPS = 50
VALIDATION_EVERY = 10
SPEC_FILE = "feature_spec.json"
METRICS_FILE = "metrics.json"


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--datastore", default="flight_features")
    p.add_argument("--snapshot-id", type=int, default=None)
    p.add_argument("--train-months", type=months, default=months("1-10"))
    p.add_argument("--test-months", type=months, default=months("11-12"))
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--batch-size", type=int, default=1024, help="global batch size")
    p.add_argument("--learning-rate", type=float, default=0.003)
    p.add_argument("--hidden-units", type=int, default=64)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--stall-timeout-s", type=float, default=300.0,
                   help="a worker that makes no training progress for this long exits (a peer died mid-collective)")
    return p.parse_args(argv)


def build_model(keras, spec: FeatureSpec, hidden: int):
    numeric = keras.Input(shape=(len(NUMERIC_FEATURES),), name="numeric")
    inputs, parts = {"numeric": numeric}, [numeric]
    for col in CATEGORICAL_FEATURES:
        cat = keras.Input(shape=(), dtype="int32", name=col)
        size = spec.vocab_size(col)
        dim = int(min(8, max(2, round(size ** 0.5))))
        parts.append(keras.layers.Embedding(size, dim, name=f"emb_{col}")(cat))
        inputs[col] = cat
    x = keras.layers.Concatenate()(parts)
    x = keras.layers.Dense(hidden, activation="relu")(x)
    x = keras.layers.Dense(hidden // 2, activation="relu")(x)
    out = keras.layers.Dense(1, activation="sigmoid", name="p_delayed")(x)
    return keras.Model(inputs=inputs, outputs=out, name="flight_delay")


def evaluate(y: np.ndarray, p: np.ndarray) -> dict:
    from sklearn.metrics import log_loss, roc_auc_score

    base = float(y.mean())
    return {"auc": float(roc_auc_score(y, p)), "log_loss": float(log_loss(y, p, labels=[0, 1])),
            "base_rate": base, "base_log_loss": float(log_loss(y, np.full_like(p, base), labels=[0, 1])),
            "rows": int(len(y))}


def predict(model, x: dict, batch: int = 8192) -> np.ndarray:
    """The model's probabilities on ``x`` (this worker only: no collective)."""
    n = len(x["numeric"])
    parts = [model({k: v[i:i + batch] for k, v in x.items()}, training=False).numpy().reshape(-1)
             for i in range(0, n, batch)]
    return np.concatenate(parts)


def training_state(model, optimizer) -> dict:
    """Every variable a resumed run needs, by a stable name: model weights, then the
    optimizer's (its step counter, moments)."""
    state = {f"model/{i:03d}": v for i, v in enumerate(model.weights)}
    state.update({f"optimizer/{i:03d}": v for i, v in enumerate(optimizer.variables)})
    return state


def restore(state: dict, arrays: dict) -> None:
    missing = sorted(set(state) ^ set(arrays))
    if missing:
        raise SystemExit(f"the checkpoint does not match this model (differs in {missing[:5]}); "
                         f"was it written by other hyperparameters?")
    for name, var in state.items():
        var.assign(arrays[name])


def main(argv=None) -> int:
    args = parse_args(argv)
    ctx = WorkerContext.from_env()
    log = MetricsLog(ctx)
    started = time.time()
    UsageSampler(ctx).start()

    import keras
    import tensorflow as tf

    # No CommunicationOptions(timeout_seconds=…): in TF 2.21 it leaks a thread per collective
    # (~3,000 per epoch here, until the process aborts); StallWatchdog below does that job.
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    keras.utils.set_random_seed(args.seed)

    handed = from_worker_env(args.datastore)  # ELEARN_DATASTORE_<NAME>, set by the gang operator
    snapshot_id = args.snapshot_id if args.snapshot_id is not None else (handed.snapshot_id if handed else None)
    print(f"worker {ctx.index}: reading datastore {args.datastore} at snapshot {snapshot_id}", flush=True)
    df = read_arrow(args.datastore, snapshot_id).to_pandas()
    in_train = df[df["month"].isin(args.train_months)].sort_values("flight_id").reset_index(drop=True)
    test = df[df["month"].isin(args.test_months)].sort_values("flight_id").reset_index(drop=True)
    # validation rows (1 in VALIDATION_EVERY by a stable hash of the flight id) pick epochs and
    # hyperparameters; the held-out test months are only for the final report
    is_val = in_train["flight_id"].map(lambda f: zlib.crc32(f.encode()) % VALIDATION_EVERY == 0).to_numpy(bool)
    train, val = in_train[~is_val].reset_index(drop=True), in_train[is_val].reset_index(drop=True)
    if len(train) == 0 or len(test) == 0 or len(val) == 0:
        print(f"no rows for train months {args.train_months} or test months {args.test_months}", file=sys.stderr)
        return 2
    spec = FeatureSpec.fit(train)
    x_val, y_val = spec.transform(val), val[LABEL].to_numpy()
    x_train = spec.transform(train)
    y_train = train[LABEL].to_numpy(dtype="float32")

    global_batch = args.batch_size
    if global_batch % ctx.num_workers:
        global_batch += ctx.num_workers - global_batch % ctx.num_workers
    per_worker = global_batch // ctx.num_workers
    steps_per_epoch = max(1, len(y_train) // global_batch)
    print(f"worker {ctx.index}/{ctx.num_workers}: {len(train)} train rows, {len(test)} test rows, "
          f"{steps_per_epoch} steps/epoch, global batch {global_batch}", flush=True)

    def dataset_fn(input_context):
        ds = tf.data.Dataset.from_tensor_slices((x_train, y_train))
        ds = ds.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)
        ds = ds.shuffle(min(len(y_train), 100_000), seed=args.seed, reshuffle_each_iteration=True).repeat()
        return ds.batch(input_context.get_per_replica_batch_size(global_batch), drop_remainder=True).prefetch(2)

    dist_ds = strategy.distribute_datasets_from_function(dataset_fn)
    with strategy.scope():
        model = build_model(keras, spec, args.hidden_units)
        optimizer = keras.optimizers.Adam(learning_rate=args.learning_rate)
        optimizer.build(model.trainable_variables)
    state = training_state(model, optimizer)
    first_epoch = 1
    resumed = ctx.checkpoints.latest() if ctx.attempt else None
    if resumed is not None:
        step, arrays = resumed
        restore(state, arrays)
        first_epoch = step // steps_per_epoch + 1
        print(f"worker {ctx.index}: resumed from step {step} (epoch {first_epoch - 1} done), "
              f"attempt {ctx.attempt}", flush=True)

    def step_fn(features, labels):
        with tf.GradientTape() as tape:
            p = tf.squeeze(model(features, training=True), axis=-1)
            per_example = keras.losses.binary_crossentropy(labels[:, None], p[:, None])
            loss = tf.nn.compute_average_loss(per_example, global_batch_size=global_batch)
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    @tf.function
    def train_steps(iterator, steps):
        total = tf.constant(0.0)
        for _ in tf.range(steps):
            features, labels = next(iterator)
            losses = strategy.run(step_fn, args=(features, labels))
            total += strategy.reduce(tf.distribute.ReduceOp.SUM, losses, axis=None)
        return total / tf.cast(steps, tf.float32)

    iterator = iter(dist_ds)
    loss = float("nan")
    watchdog = StallWatchdog(args.stall_timeout_s).start()
    for epoch in range(first_epoch, args.epochs + 1):
        t0 = time.time()
        # chunks of steps: the watchdog hears of progress between them
        chunks = [CHUNK_STEPS] * (steps_per_epoch // CHUNK_STEPS) + [steps_per_epoch % CHUNK_STEPS]
        chunks = [c for c in chunks if c]
        if epoch == first_epoch and chunks[0] > 1:  # one step alone: when training really started
            chunks = [1, chunks[0] - 1] + chunks[1:]
        total = 0.0
        for n in chunks:
            total += float(train_steps(iterator, tf.constant(n))) * n
            watchdog.beat()
            if n == 1 and epoch == first_epoch:
                print(f"first training step done {time.time() - started:.1f}s after the worker started", flush=True)
        loss = total / steps_per_epoch
        print(f"epoch {epoch}/{args.epochs} loss={loss:.6f} ({time.time() - t0:.1f}s, per-worker batch {per_worker})",
              flush=True)
        record = {"epoch": epoch, "loss": loss, "seconds": time.time() - t0, "steps": steps_per_epoch}
        if ctx.is_chief:  # the tuner reads the chief's per-epoch validation AUC (early stopping)
            record["val_auc"] = evaluate(y_val, predict(model, x_val))["auc"]
            print(f"epoch {epoch} val_auc={record['val_auc']:.4f}", flush=True)
        log.append(**record)
        log.heartbeat(epoch=epoch)
        if ctx.is_chief and epoch < args.epochs:
            step = int(optimizer.iterations.numpy())
            ctx.checkpoints.save(step, {name: v.numpy() for name, v in state.items()}, epoch=epoch)

    if not ctx.is_chief:
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        model.save(out / MODEL_FILE)
        (out / SPEC_FILE).write_text(spec.to_json())
        Lookups.from_datastore(df).save(out)
        # held-out metrics come from the saved file reloaded, i.e. from what will be served
        reloaded = keras.models.load_model(out / MODEL_FILE)
        p = reloaded.predict(spec.transform(test), batch_size=4096, verbose=0).reshape(-1)
        metrics = evaluate(test[LABEL].to_numpy(), p)
        metrics["val_auc"] = evaluate(y_val, reloaded.predict(x_val, batch_size=4096, verbose=0).reshape(-1))["auc"]
        metrics.update(train_rows=int(len(train)), final_loss=loss, train_seconds=time.time() - started,
                       steps=int(optimizer.iterations.numpy()), attempt=ctx.attempt)
        (out / METRICS_FILE).write_text(json.dumps(metrics, indent=2, sort_keys=True))
        for path in sorted(out.iterdir()):
            ctx.store.put_file(path, f"{ctx.layout.model}/{path.name}")
    print(f"held-out auc={metrics['auc']:.4f} log_loss={metrics['log_loss']:.4f} "
          f"(base rate {metrics['base_rate']:.3f}, base log loss {metrics['base_log_loss']:.4f})", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
