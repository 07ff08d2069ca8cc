"""PySpark jobs; each file runs alone with ``spark-submit`` and imports only pyspark."""
