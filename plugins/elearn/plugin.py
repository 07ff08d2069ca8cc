"""The Airflow plugin: it only wires elearn into Airflow (STYLE.md 7)."""

from airflow.plugins_manager import AirflowPlugin

from elearn.api.app import create_app


class ElearnPlugin(AirflowPlugin):
    name = "elearn"
    fastapi_apps = [{"app": create_app(), "url_prefix": "/elearn", "name": "elearn"}]
