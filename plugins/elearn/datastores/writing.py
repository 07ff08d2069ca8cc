"""Writing a datastore's next snapshot in place: a fresh folder inside the table's data location.

A producer that writes its Parquet files into ``new_output_folder(name)`` lets
``register_datastore`` commit them where they lie: no hard link, copy or upload, wherever the
object store is (``file://`` on another filesystem than the producer's scratch space, or
``s3://``). Such a folder is invisible until that commit: a datastore is read through its
Iceberg snapshots, which name every file they hold, never by listing folders, so files written
there and never registered (a failed or abandoned write) belong to no snapshot. They are orphans,
like the copies of a registration that died before its commit, left for an orphan-file clean-up
(which must spare recent folders: one may still be being written).
"""

from __future__ import annotations

import uuid

from pyiceberg.catalog import Catalog
from pyiceberg.exceptions import NamespaceAlreadyExistsError, NoSuchTableError
from sqlalchemy.exc import IntegrityError

from elearn.datastores.catalog import NAMESPACE, get_catalog, table_identifier
from elearn.datastores.ref import validate_name
from elearn.errors import InvalidInput
from elearn.objectstore import ObjectStore

DATA_FOLDER = "data"  # Iceberg's default: data files under <table location>/data/
OUTPUT_PREFIX = "output-"  # producers' folders; register's own copies go to elearn-<batch>


def create_namespace(catalog: Catalog) -> None:
    try:
        catalog.create_namespace(NAMESPACE)
    except (NamespaceAlreadyExistsError, IntegrityError):
        pass  # pyiceberg checks, then inserts: a writer that lost that race gets the database's IntegrityError


def data_location(table_location: str) -> str:
    """The folder (URI, ending in ``/``) below which a table's data files are committed in place."""
    return f"{table_location.rstrip('/')}/{DATA_FOLDER}/"


def store_key(objects: ObjectStore, uri: str, name: str, table_location: str) -> str:
    """The key of ``uri`` (inside the table at ``table_location``) in ``objects``; ``InvalidInput``
    naming both when the table lives outside the store."""
    root = objects.root.rstrip("/") + "/"
    if not uri.startswith(root):
        raise InvalidInput(f"datastore {table_identifier(name)} lives at {table_location}, outside the object "
                           f"store {objects.root}")
    return uri[len(root):]


def new_output_folder(name: str, *, objects: ObjectStore, catalog: Catalog | None = None) -> str:
    """The URI of a fresh folder, unique to this call, under the data location of datastore
    ``name`` in ``objects``, for a producer to write the Parquet files of one snapshot into.

    ``register_datastore(name, uri, objects=objects, ...)`` then commits those files in place (no
    copy or upload). Until then nothing reads them; one folder holds one output and is committed
    once (see ``register_datastore``). The datastore need not exist yet: no table and no snapshot
    is created, the folder lies where the first registration creates the table (the catalog's
    default location). On a ``file://`` store the folder is created (pyarrow writes into an
    existing folder); S3 has no folders. ``ObjectStore.arrow_filesystem`` gives the pyarrow
    filesystem and path to write a key with. ``InvalidInput`` for a bad name, or when the
    datastore's table lives outside ``objects``.
    """
    validate_name(name)
    catalog = catalog or get_catalog()
    create_namespace(catalog)  # the default location reads the namespace's properties
    try:
        location = catalog.load_table(table_identifier(name)).location()
    except NoSuchTableError:
        # what create_table (without a location) will choose; a private pyiceberg method, public on no catalog
        location = catalog._resolve_table_location(None, NAMESPACE, name)
    folder = f"{data_location(location)}{OUTPUT_PREFIX}{uuid.uuid4().hex}"
    key = store_key(objects, folder, name, location)
    if not objects.is_s3:
        objects.local_path(key).mkdir(parents=True)
    return folder
