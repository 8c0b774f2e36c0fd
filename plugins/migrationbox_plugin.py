"""Airflow plugin: mounts the MigrationBox API at /migrationbox and links it in the UI.

Airflow mounts plugin apps without its own auth: every route gets Airflow's security
dependencies, so the auth manager in use answers who may read (``requires_access_dag
("GET")``) and who may register or check endpoints (``requires_access_dag("PUT")``) -
the same ``is_authorized_dag`` checks as Airflow's own routes (docs/access-control.md).
"""

from airflow.api_fastapi.core_api.security import requires_access_dag
from airflow.plugins_manager import AirflowPlugin

from migrationbox.api.app import build_app


class MigrationBoxPlugin(AirflowPlugin):
    name = "migrationbox"
    fastapi_apps = [
        {
            "app": build_app(auth=requires_access_dag(method="GET"),
                             operate=requires_access_dag(method="PUT")),
            "url_prefix": "/migrationbox",
            "name": "MigrationBox API",
        }
    ]
    external_views = [
        {
            "name": "MigrationBox API",
            "href": "/migrationbox/docs",
            "destination": "nav",
            "url_route": "migrationbox",
        }
    ]
