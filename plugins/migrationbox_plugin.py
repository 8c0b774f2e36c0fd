"""Airflow plugin: mounts the MigrationBox API at /migrationbox and links it in the UI."""

from airflow.api_fastapi.core_api.security import requires_authenticated
from airflow.plugins_manager import AirflowPlugin

from migrationbox.api.app import build_app


class MigrationBoxPlugin(AirflowPlugin):
    name = "migrationbox"
    fastapi_apps = [
        {
            "app": build_app(auth=requires_authenticated()),
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
