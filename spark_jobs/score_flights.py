"""Score flights with a model version in Spark, as its Bento would answer each of them.

Run alone:
    spark-submit spark_jobs/score_flights.py --input part-0.parquet [--input …] --model-dir DIR \
        --model flight_delay --version 3 --output out/

The inputs are Parquet files holding flight records (a datastore snapshot's data files, listed
by the caller). ``DIR`` holds the version's registered files (``model.keras``,
``feature_spec.json``, ``lookup_*.parquet``); Spark ships it to every executor. Each partition
runs ``elearn.features.predict.FlightScorer`` in ``mapInPandas``: the Bento's own path (lookups
for what a caller cannot send, the feature spec, the compiled model call), so a batch prediction
and an online answer for the same flight cannot differ. Unlike the other jobs of this folder it
imports elearn's feature module (and TensorFlow on the executors): that is the point.

Output columns: flight_id, year, month, day, p_delayed, delayed (p_delayed >= 0.5),
weather_source, model, model_version. On bad input the job prints one line
``ELEARN_ERROR: <message>`` and exits with status 2.
"""

from __future__ import annotations

import argparse
import os
import sys

from pyspark.sql import SparkSession

from elearn.features.flights import REQUIRED_FIELDS, WEATHER_FIELDS

ERROR_PREFIX = "ELEARN_ERROR: "
# a flight record as the Bento takes it (elearn.features.predict.RECORD_FIELDS): weather is optional
REQUIRED = ["flight_id", *REQUIRED_FIELDS]
SCHEMA = ("flight_id string, year int, month int, day int, p_delayed double, delayed boolean, "
          "weather_source string, model string, model_version int")
def score_partitions(model_dir_name: str, model: str, version: int):
    def score(batches):
        import pandas as pd
        from pyspark import SparkFiles

        from elearn.features.predict import cached_scorer

        # once per Python worker (the cache lives in an imported module, not in this shipped function);
        # each worker is one of Spark's task slots: one core, one TensorFlow thread
        flight_scorer = cached_scorer(SparkFiles.get(model_dir_name), tf_threads=1)
        for records in batches:
            if records.empty:
                continue
            p, sources = flight_scorer.score(records)
            yield pd.DataFrame({"flight_id": records["flight_id"], "year": records["year"].astype("int32"),
                                "month": records["month"].astype("int32"), "day": records["day"].astype("int32"),
                                "p_delayed": p, "delayed": p >= 0.5, "weather_source": sources,
                                "model": model, "model_version": version})

    return score


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--input", action="append", required=True, help="a Parquet file or folder of flight records")
    parser.add_argument("--model-dir", required=True, help="folder (or URI) of the version's registered files")
    parser.add_argument("--model", required=True)
    parser.add_argument("--version", type=int, required=True)
    parser.add_argument("--output", required=True, help="folder for the Parquet predictions (replaced)")
    args = parser.parse_args(argv)

    spark = (SparkSession.builder.appName("elearn-score-flights")
             .config("spark.sql.session.timeZone", "UTC")
             # Arrow batches of 10,000 records: the compiled call's cost is per batch, not per record
             .config("spark.sql.execution.arrow.maxRecordsPerBatch", "10000")
             .getOrCreate())
    spark.sparkContext.setLogLevel("WARN")
    try:
        df = spark.read.parquet(*args.input)
        missing = [c for c in REQUIRED if c not in df.columns]
        if missing:
            print(f"{ERROR_PREFIX}the input has no column(s) {missing}; score a datastore of flight records "
                  f"(such as flight_features)", file=sys.stderr, flush=True)
            return 2
        spark.sparkContext.addFile(args.model_dir, recursive=True)
        name = os.path.basename(args.model_dir.rstrip("/"))
        records = df.select(*REQUIRED, *[c for c in WEATHER_FIELDS if c in df.columns])
        scored = records.mapInPandas(score_partitions(name, args.model, args.version), SCHEMA)
        # written as scored (a file per input partition): a shuffle to sort them cost more than the scoring
        scored.write.mode("overwrite").parquet(args.output)
        rows = spark.read.parquet(args.output).count()
        print(f"ELEARN_RESULT: rows={rows} output={args.output}", flush=True)
    finally:
        spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
