"""The MigrationBox HTTP API, mounted into Airflow's API server by the plugin."""
