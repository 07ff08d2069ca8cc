"""The Airflow plugin: it only wires elearn into Airflow (STYLE.md 7)."""

from airflow.plugins_manager import AirflowPlugin

from elearn.api.app import create_app

PAGES = [("Datastores", "datastores"), ("Models", "models"), ("Studies", "studies"), ("Runs", "runs"),
         ("Releases", "releases"),
         ("Notebooks", "notebooks"), ("GPU usage", "usage")]


class ElearnPlugin(AirflowPlugin):
    name = "elearn"
    fastapi_apps = [{"app": create_app(), "url_prefix": "/elearn", "name": "elearn"}]
    # each page inside the Airflow UI (an iframe at /plugin/elearn-<page>), under the "elearn" category
    external_views = [{"name": name, "href": f"/elearn/ui/{page}", "url_route": f"elearn-{page}",
                       "destination": "nav", "category": "elearn"} for name, page in PAGES]
