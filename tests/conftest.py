"""Test-wide isolation: Airflow and MigrationBox state live in a throwaway folder.

Set before anything imports Airflow, so no test touches the developer's ``.runtime``.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

_ROOT = Path(tempfile.mkdtemp(prefix="mbtest-"))
os.environ.setdefault("AIRFLOW_HOME", str(_ROOT / "airflow"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ.setdefault("MIGRATIONBOX_HOME", str(_ROOT / "runtime"))
os.environ.setdefault("MIGRATIONBOX_STORE_URL", f"sqlite:///{_ROOT / 'runtime' / 'store.db'}")
(_ROOT / "runtime").mkdir(parents=True, exist_ok=True)
