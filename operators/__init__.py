"""Airflow operators: thin classes over ``elearn`` (no business logic of their own)."""

from operators.datastore import RegisterDatastoreOperator
from operators.gang import GangTrainingOperator
from operators.incoming import IncomingDatastoreSensor
from operators.registry import RegisterModelOperator
from operators.serving import BuildBentoOperator, CanaryReleaseOperator
from operators.spark import SparkPreprocessOperator

__all__ = ["BuildBentoOperator", "CanaryReleaseOperator", "GangTrainingOperator", "IncomingDatastoreSensor",
           "RegisterDatastoreOperator", "RegisterModelOperator", "SparkPreprocessOperator"]
