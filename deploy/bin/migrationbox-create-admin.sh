#!/usr/bin/env bash
# Create the first FAB admin of a cluster, or reset its password and role, with the
# container's own Airflow configuration (its metadata database, its auth manager).
#
#   migrationbox-create-admin.sh [USER] < password-file      # Helm: kubectl exec -i ...
#   MIGRATIONBOX_ADMIN_PASSWORD_FILE=/run/secrets/x migrationbox-create-admin.sh   # compose init
#
# The password (first line, 12 characters or more) comes from the file named by
# MIGRATIONBOX_ADMIN_PASSWORD_FILE or from standard input; never from the command line,
# where `ps` would show it. It reaches the FAB user manager on its standard input.
set -euo pipefail

user="${1:-${MIGRATIONBOX_ADMIN_USER:-admin}}"
if [[ "${AIRFLOW__CORE__AUTH_MANAGER:-}" != *FabAuthManager ]]; then
    echo "migrationbox-create-admin: AIRFLOW__CORE__AUTH_MANAGER is not FAB's; users belong to the FAB auth manager" >&2
    exit 2
fi
MIGRATIONBOX_ADMIN_USER="${user}" python - <<'PY' | python -m migrationbox.platform.auth
import json
import os
import sys

path = os.environ.get("MIGRATIONBOX_ADMIN_PASSWORD_FILE")
text = open(path).read() if path else sys.stdin.read()
lines = text.splitlines()
request = {"op": "upsert_user", "password": lines[0] if lines else "",
           "user": {"username": os.environ["MIGRATIONBOX_ADMIN_USER"], "role": "admin",
                    "update": True}}
print(json.dumps(request))
PY
