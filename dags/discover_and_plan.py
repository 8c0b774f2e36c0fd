"""Airflow DAG: validate, store and plan an estate; publish the plans Asset."""

from migrationbox.orchestration.planning_dag import build_planning_dag

dag = build_planning_dag()
