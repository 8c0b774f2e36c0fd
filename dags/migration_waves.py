"""Wave DAGs (``migrate__<estate>__wave_<NN>``) when the plans DAG bundle is not configured.

On the local platform every estate's wave DAGs come from its own loader file
(``<plans>/dags/migrate__<estate>.py``, in the ``migrationbox-plans`` DAG bundle), so
that a broken plan spec is an import error of that estate only; this file then
registers nothing. A deployment that ships only this folder gets every estate's wave
DAGs from here instead, with a ``migrate__<estate>__spec_error`` DAG standing in for a
broken estate (``strict_specs``: an import error of this file). When a worker parses
this file to run one task, only that task's DAG is built; parsing creates nothing.
See ``migrationbox.orchestration.wave_dag``.
"""

from airflow.sdk import get_parsing_context

from migrationbox.orchestration.wave_dag import dags_folder_wave_dags

_only = get_parsing_context().dag_id
globals().update(
    dags_folder_wave_dags(only_dag_id=_only if (_only or "").startswith("migrate__") else None)
)
