# MigrationBox on the official Apache Airflow image.
#
#   docker build -t migrationbox .
#
# The image carries the pinned requirements, the `migrationbox` package and the DAG
# and plugin folders. Run it like any Airflow image (api-server, scheduler,
# dag-processor, triggerer, celery worker, celery flower) or as the MLflow server
# (`mlflow server`, MLflow is in the pinned requirements); deploy/compose/compose.yaml and
# deploy/helm/values.yaml run it so. Give it its connections at deploy time, e.g.
# AIRFLOW_CONN_AWS_DEFAULT (real AWS, no endpoint_url) and
# AIRFLOW_CONN_MIGRATIONBOX_STORE (a PostgreSQL connection), or a secrets backend.
FROM apache/airflow:3.3.2-python3.11

USER airflow

# The Airflow docs' way to add packages to the image: name apache-airflow at the
# image's own version next to the requirements so pip can never replace it.
COPY --chown=airflow:root requirements.txt /tmp/migrationbox-requirements.txt
RUN pip install --no-cache-dir "apache-airflow==${AIRFLOW_VERSION}" \
        -r /tmp/migrationbox-requirements.txt

ENV MIGRATIONBOX_SRC=/opt/migrationbox
COPY --chown=airflow:root . ${MIGRATIONBOX_SRC}
# Editable, so the package finds its project root (templates, pricing data, settings).
RUN pip install --no-cache-dir --no-deps -e ${MIGRATIONBOX_SRC}

# Folders the deployment files mount named volumes (compose) or claims (Helm) on: made
# here, as the airflow user, so a fresh volume takes this owner and mode instead of root's.
# MIGRATIONBOX_HOME holds the plans (and their DAG bundle, plans/dags) that every
# component must see; mlflow-artifacts is the MLflow server's artifact folder.
RUN mkdir -p /opt/airflow/migrationbox/plans/dags /opt/airflow/mlflow-artifacts

ENV AIRFLOW__CORE__DAGS_FOLDER=${MIGRATIONBOX_SRC}/dags \
    AIRFLOW__CORE__PLUGINS_FOLDER=${MIGRATIONBOX_SRC}/plugins \
    AIRFLOW__CORE__LOAD_EXAMPLES=False \
    AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION=False \
    MIGRATIONBOX_HOME=/opt/airflow/migrationbox
