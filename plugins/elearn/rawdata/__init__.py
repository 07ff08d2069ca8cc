"""Raw input tables landed in the object store (the "big-data side" of the demo)."""

from elearn.rawdata.landing import RAW_TABLES, land_nycflights13, local_inputs, verify_landed

__all__ = ["RAW_TABLES", "land_nycflights13", "local_inputs", "verify_landed"]
