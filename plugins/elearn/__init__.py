"""elearn: the batch ML platform that lives inside Apache Airflow.

The package is Airflow-free at import time: gang workers, Bentos and the CLI import it
without Airflow installed (only ``elearn.plugin`` needs Airflow).
"""

__version__ = "0.1.0"
