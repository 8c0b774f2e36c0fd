#!/usr/bin/env bash
# One-shot initialisation of a MigrationBox cluster, run from the project's image before
# the Airflow components start: the `init` service of deploy/compose/compose.yaml and
# the migrate-database job of deploy/helm/values.yaml. Safe to run again (upgrades run
# it after a new image): every step below is idempotent.
#
#   1. (MIGRATIONBOX_INIT_CREATE_DATABASES=true only, i.e. compose with its own
#      PostgreSQL) create the Airflow metadata, store and MLflow databases if missing,
#      through the project's own ProductionConfig / ensure_database;
#   2. `airflow db migrate` (Airflow's Alembic migrations of the metadata database);
#   3. `migrationbox store upgrade` (the MigrationBox store's Alembic migrations, under
#      a PostgreSQL advisory lock, version table migrationbox_alembic_version);
#   3b. (MIGRATIONBOX_ADMIN_PASSWORD_FILE set) create the first FAB admin or reset its
#      password (deploy/bin/migrationbox-create-admin.sh);
#   4. create the pools of airflow_settings.yaml that do not exist yet (an operator's
#      resize is kept: migrationbox_provision, migrationbox_replication,
#      migrationbox_cloud_api, migrationbox_training; a wave task in a pool that does
#      not exist never runs) and import its variables without overwriting existing ones.
#
# Connections are NOT created here: the cloud connections of airflow_settings.yaml point
# at the local emulator with test credentials; on a cluster they come from a secrets
# backend or `airflow connections add` (docs/production.md, "Deploying on a cluster").
set -euo pipefail

src="${MIGRATIONBOX_SRC:-/opt/migrationbox}"

if [[ "${MIGRATIONBOX_INIT_CREATE_DATABASES:-false}" == "true" ]]; then
    python - <<'PY'
from migrationbox.platform.production import ProductionConfig, ensure_database
import os

cfg = ProductionConfig.from_settings()
for name in (cfg.airflow_db, cfg.store_db, os.environ.get("MIGRATIONBOX_MLFLOW_DB", "")):
    if name:
        created = ensure_database(cfg, name)
        print(f"database {name}: {'created' if created else 'exists'}")
PY
fi

airflow db migrate
migrationbox store upgrade

# the first FAB admin (compose: the migrationbox_admin_password secret); a Helm install
# runs the same script by hand once (deploy/helm/values.yaml, docs/access-control.md)
if [[ -n "${MIGRATIONBOX_ADMIN_PASSWORD_FILE:-}" ]]; then
    bash "${src}/deploy/bin/migrationbox-create-admin.sh"
fi

settings_json="$(mktemp)"
trap 'rm -f "${settings_json}"' EXIT
python - "${src}/airflow_settings.yaml" "${settings_json}" <<'PY'
import json
import sys

import yaml

with open(sys.argv[1]) as handle:
    airflow = yaml.safe_load(handle)["airflow"]
pools = {p["pool_name"]: {"slots": int(p["pool_slot"]),
                          "description": p.get("pool_description") or ""}
         for p in airflow.get("pools") or []}
variables = {v["variable_name"]: v["variable_value"] for v in airflow.get("variables") or []}
with open(sys.argv[2], "w") as handle:
    json.dump({"pools": pools, "variables": variables}, handle)
PY

python - "${settings_json}" <<'PY' | while IFS=$'\t' read -r name slots description; do
import json
import sys

for name, pool in json.load(open(sys.argv[1]))["pools"].items():
    print(f"{name}\t{pool['slots']}\t{pool['description']}")
PY
    if airflow pools get "${name}" >/dev/null 2>&1; then
        echo "pool ${name}: exists (kept)"
    else
        airflow pools set "${name}" "${slots}" "${description}"
    fi
done

variables_json="$(mktemp)"
trap 'rm -f "${settings_json}" "${variables_json}"' EXIT
python -c 'import json, sys; json.dump(json.load(open(sys.argv[1]))["variables"], open(sys.argv[2], "w"))' \
    "${settings_json}" "${variables_json}"
airflow variables import --action-on-existing-key skip "${variables_json}"

echo "migrationbox-init: done"
