"""MigrationBox: plan and run migrations of on-premise estates to the clouds on Airflow 3.

The package holds all domain logic so that it can be tested without a scheduler; the
DAG files and the Airflow plugin only wire it together.
"""

__version__ = "0.1.0"
