"""One DAG per wave of every stored MigrationBox plan (``migrate__<estate>__wave_<NN>``).

Thin on purpose: the specs come from ``migrationbox plan`` (files in the plans folder),
the shape of each DAG from ``migrationbox.orchestration.graph`` and its rendering from
``migrationbox.orchestration.wave_dag``. When a worker parses this file to run one task,
only that task's DAG is built. A broken spec fails its own estate only (a
``migrate__<estate>__spec_error`` DAG names the file and field); parsing creates nothing.
"""

from airflow.sdk import get_parsing_context

from migrationbox.orchestration.wave_dag import build_all

_only = get_parsing_context().dag_id
globals().update(build_all(only_dag_id=_only if (_only or "").startswith("migrate__") else None))
