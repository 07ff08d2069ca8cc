"""All ORM tables, imported so that ``Base.metadata`` is complete for Alembic."""

from elearn.db.base import Base
from elearn.compute import dbmodels as _gang_tables  # noqa: F401  (registers the tables)
from elearn.datastores import dbmodels as _datastore_tables  # noqa: F401  (registers the tables)
from elearn.monitoring import dbmodels as _monitoring_tables  # noqa: F401  (registers the tables)
from elearn.registry import dbmodels  # noqa: F401  (registers the registry tables)
from elearn.serving import dbmodels as _serving_tables  # noqa: F401  (registers the tables)
from elearn.tuning import dbmodels as _tuning_tables  # noqa: F401  (registers the tables)

__all__ = ["Base"]
