"""elearn's HTTP API, mounted into Airflow's API server at /elearn by the plugin."""
