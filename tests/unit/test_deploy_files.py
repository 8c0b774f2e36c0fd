"""Structure of the deployment files (deploy/compose, deploy/helm) without a container runtime.

There is no Docker daemon or Kubernetes on the machines this project is built on, so the
compose file and the Helm values are never started here. What can be checked without
them is checked: they parse; every Airflow service and MLflow is built from the
project's Dockerfile; no secret has a default or a literal value; only the UI/API and
Flower are published, on 127.0.0.1; and, most importantly, the Airflow settings in both
files agree with what the project's own platform configures
(:func:`migrationbox.platform.airflow_runtime.airflow_config_env` under
:meth:`migrationbox.platform.production.ProductionConfig.airflow_overrides`): the
expected values are computed by those functions, not written here, so a change there
that the deployment files miss fails these tests. The Helm values' keys are checked
against deploy/helm/chart-keys.txt, a key list derived from the chart's values.yaml and
values.schema.json (its header says from which commit; the schema itself is not
vendored).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from migrationbox.config import project_root
from migrationbox.orchestration.spec import loaders_dir
from migrationbox.platform import airflow_runtime as afr
from migrationbox.platform.production import ProductionConfig

ROOT = project_root()
COMPOSE = ROOT / "deploy" / "compose" / "compose.yaml"
ENV_EXAMPLE = ROOT / "deploy" / "compose" / ".env.example"
HELM_VALUES = ROOT / "deploy" / "helm" / "values.yaml"
CHART_KEYS = ROOT / "deploy" / "helm" / "chart-keys.txt"
DOCKERFILE = ROOT / "Dockerfile"

# Where the image puts things (Dockerfile): the checkout, AIRFLOW_HOME, MIGRATIONBOX_HOME.
IMAGE_SRC = Path("/opt/migrationbox")
IMAGE_AIRFLOW_HOME = Path("/opt/airflow")
IMAGE_PLANS = Path("/opt/airflow/migrationbox/plans")

#: The services issue 12 item 3 names, by their compose names.
AIRFLOW_SERVICES = {"api-server", "scheduler-1", "scheduler-2", "dag-processor",
                    "triggerer-1", "triggerer-2", "celery-worker-1", "celery-worker-2",
                    "celery-replication-worker-1", "celery-replication-worker-2", "flower",
                    "init"}
REQUIRED_SERVICES = AIRFLOW_SERVICES | {"postgres", "redis", "mlflow"}
#: Built from the project's Dockerfile: every Airflow container and MLflow.
BUILT_SERVICES = AIRFLOW_SERVICES | {"mlflow"}
#: The only services published on the host (always on 127.0.0.1).
PUBLISHED = {"api-server", "flower"}

#: Settings of the embedded configuration that a container deployment must set
#: differently, with the reason; every other key of airflow_config_env must be equal.
COMPOSE_DIFFERS = {
    # containers reach the API server by its service name, not on loopback
    "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": "http://api-server:8080/execution/",
    # the API server listens on all interfaces of its container; the host publishes it
    # on 127.0.0.1 only (checked by test_only_ui_and_flower_published_on_loopback)
    "AIRFLOW__API__HOST": "0.0.0.0",
}

#: The same for the Helm values: pods reach the API server through the chart's Service
#: (a chart template, rendered by Helm).
HELM_DIFFERS = {
    "AIRFLOW__CORE__EXECUTION_API_SERVER_URL":
        'http://{{ include "airflow.fullname" . }}-api-server:{{ .Values.ports.apiServer }}'
        "/execution/",
}

#: Stand-in values for the variables the compose file requires, used to interpolate it
#: the way `docker compose` does. Plain tokens, as the .env.example tells users to make.
TEST_ENV = {
    "POSTGRES_PASSWORD": "pgpasswordfortest",
    "REDIS_PASSWORD": "redispasswordfortest",
    "AIRFLOW_FERNET_KEY": "fernetkeyfortest",
    "AIRFLOW_JWT_SECRET": "jwtsecretfortest",
    "AIRFLOW_API_SECRET_KEY": "apisecretfortest",
    "FLOWER_BASIC_AUTH": "ops:flowerpasswordfortest",
    "MIGRATIONBOX_ADMIN_PASSWORD_FILE": "/secure/admin-password",
}

#: Chart values that would hold a secret in clear (the chart would then put it in a
#: Secret it creates): the values must use the ...SecretName form instead.
HELM_SECRET_VALUES = {"password", "pass", "fernetKey", "jwtSecret", "apiSecretKey",
                      "webserverSecretKey", "brokerUrl", "metadataConnection",
                      "resultBackendConnection", "keytabBase64Content", "sshKey"}
SECRET_NAME = re.compile(r"(PASSWORD$|PASSWORD_|SECRET|FERNET|JWT|TOKEN|_KEY$|_AUTH$)")
VAR = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:\?|:-|\?|-)(?P<arg>[^}]*))?\}")
URL_PASSWORD = re.compile(r"[a-z][a-z0-9+.-]*://[^:/@\s]*:(?P<password>[^@\s]+)@")


# -- helpers ----------------------------------------------------------------------------


def _strings(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, Mapping):
        for key, value in node.items():
            yield str(key)
            yield from _strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from _strings(item)


def interpolate(text: str, env: Mapping[str, str]) -> str:
    """Compose's interpolation of ``${VAR}``, ``${VAR:-default}``, ``${VAR:?message}``
    (and ``$$``); an unset required variable raises, as compose stops."""
    def one(match: re.Match[str]) -> str:
        name, op, arg = match.group("name"), match.group("op"), match.group("arg")
        value = env.get(name)
        if op in (":?", "?"):
            if not value:
                raise KeyError(f"{name}: {arg}")
            return value
        if op in (":-", "-"):
            return value if value else (arg or "")
        return value or ""

    return VAR.sub(one, text.replace("$$", "\0")).replace("\0", "$")


def _interpolated(node: Any, env: Mapping[str, str]) -> Any:
    if isinstance(node, str):
        return interpolate(node, env)
    if isinstance(node, Mapping):
        return {k: _interpolated(v, env) for k, v in node.items()}
    if isinstance(node, list):
        return [_interpolated(v, env) for v in node]
    return node


def _environment(service: Mapping[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):  # KEY=VALUE form
        env = dict(item.split("=", 1) for item in env)
    return {str(k): str(v) for k, v in env.items()}


def _command(service: Mapping[str, Any]) -> list[str]:
    command = service.get("command") or []
    return [str(c) for c in command] if isinstance(command, list) else str(command).split()


def _only_references(value: str) -> bool:
    """The value is made only of ``${...}`` references (nothing literal)."""
    return bool(value) and not VAR.sub("", value).strip()


@pytest.fixture(scope="module")
def compose_raw() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict) and isinstance(data.get("services"), dict)
    return data


@pytest.fixture(scope="module")
def compose(compose_raw: dict[str, Any]) -> dict[str, Any]:
    """The compose file as `docker compose config` would see it with TEST_ENV set."""
    return _interpolated(compose_raw, TEST_ENV)


@pytest.fixture(scope="module")
def helm() -> dict[str, Any]:
    data = yaml.safe_load(HELM_VALUES.read_text())
    assert isinstance(data, dict)
    return data


def _embedded_config(airflow_home: Path) -> dict[str, str]:
    """airflow_config_env as it would be computed inside the image, without the
    SimpleAuthManager's own options: the production profile runs FAB (its
    airflow_overrides say so), for which they mean nothing."""
    env = afr.airflow_config_env(
        airflow_home, afr.DEFAULT_API_PORT, IMAGE_SRC / "dags", IMAGE_SRC / "plugins",
        loaders_folder=loaders_dir(IMAGE_PLANS), users=f"{afr.ADMIN_USERNAME}:admin")
    return {k: v for k, v in env.items()
            if not k.startswith("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER")}


def _production_config(env: Mapping[str, str], monkeypatch: pytest.MonkeyPatch,
                       celery_workers: int) -> ProductionConfig:
    """ProductionConfig.from_settings() with the compose file's MIGRATIONBOX_* variables."""
    for key in list(os.environ):
        if key.startswith(("MIGRATIONBOX_PRODUCTION_", "AIRFLOW__MIGRATIONBOX__PRODUCTION_")):
            monkeypatch.delenv(key)
    for key, value in env.items():
        if key.startswith("MIGRATIONBOX_PRODUCTION_"):
            monkeypatch.setenv(key, value)
    return ProductionConfig.from_settings(celery_workers=celery_workers)


def _helm_queues(args: list[str]) -> tuple[set[str], int | None]:
    """Queues and ``--concurrency`` (None: the config's) of a Helm worker set's args,
    which must run ``airflow celery worker`` through ``bash -c exec``."""
    line = " ".join(args)
    assert line.startswith("bash -c exec airflow celery worker"), line
    queues = re.search(r"--queues (\S+)", line)
    assert queues, f"no --queues in {line!r}"
    concurrency = re.search(r"--concurrency (\d+)", line)
    return set(queues.group(1).split(",")), int(concurrency.group(1)) if concurrency else None


def _worker_services(compose: Mapping[str, Any], queue: str = "default") -> list[str]:
    """The Celery worker services that serve ``queue`` (their ``--queues`` option)."""
    out = []
    for name, service in compose["services"].items():
        command = _command(service)
        if command[:2] == ["celery", "worker"] and "--queues" in command \
                and queue in command[command.index("--queues") + 1].split(","):
            out.append(name)
    return sorted(out)


# -- compose: shape ---------------------------------------------------------------------


def test_compose_names_every_service_of_the_issue(compose: dict[str, Any]) -> None:
    missing = REQUIRED_SERVICES - set(compose["services"])
    assert not missing, f"compose.yaml lacks {sorted(missing)}"
    assert len(_worker_services(compose)) == 2
    # replication on its own workers, serving nothing else
    replication = _worker_services(compose, "replication")
    assert replication == ["celery-replication-worker-1", "celery-replication-worker-2"]
    assert not set(replication) & set(_worker_services(compose))
    schedulers = [n for n, s in compose["services"].items() if _command(s) == ["scheduler"]]
    assert len(schedulers) == 2
    # two triggerers, so the heal watch survives one of them
    triggerers = [n for n, s in compose["services"].items() if _command(s) == ["triggerer"]]
    assert triggerers == ["triggerer-1", "triggerer-2"]
    assert all(compose["services"][n]["healthcheck"]["test"][1].startswith(
        "airflow jobs check --job-type TriggererJob") for n in triggerers)


def test_airflow_services_and_mlflow_are_built_from_the_project_dockerfile(
    compose: dict[str, Any],
) -> None:
    images = set()
    for name in sorted(BUILT_SERVICES):
        service = compose["services"][name]
        build = service.get("build")
        assert isinstance(build, Mapping), f"{name} has no build section"
        context = (COMPOSE.parent / build["context"]).resolve()
        assert context == ROOT.resolve(), f"{name} builds from {context}, not the project"
        assert (context / build.get("dockerfile", "Dockerfile")).resolve() == DOCKERFILE.resolve()
        images.add(service.get("image"))
    assert len(images) == 1, f"the built services should share one image tag, got {images}"
    for name in ("postgres", "redis"):
        assert "build" not in compose["services"][name]


def test_dockerfile_serves_the_services(compose: dict[str, Any]) -> None:
    """The image is Airflow at the pinned version, carries MLflow and Flower, and makes
    the folders the named volumes are mounted on (so they are not created root-owned)."""
    text = DOCKERFILE.read_text()
    base = re.search(r"^FROM\s+(\S+)", text, re.M)
    assert base and base.group(1) == f"apache/airflow:{afr.airflow_version()}-python3.11"
    pins = (ROOT / "requirements.txt").read_text().splitlines()
    for package in ("mlflow", "flower", "apache-airflow-providers-celery", "psycopg2-binary"):
        assert any(p.startswith(f"{package}==") for p in pins), f"{package} is not pinned"
    made = {Path(p) for m in re.finditer(r"mkdir -p ([^\n]+)", text) for p in m.group(1).split()}
    made_or_parents = made | {q for p in made for q in p.parents}
    base_image_dirs = {IMAGE_AIRFLOW_HOME / "logs"}  # made by the official image
    for name in sorted(BUILT_SERVICES):
        for mount in compose["services"][name].get("volumes") or []:
            target = Path(str(mount).split(":")[1])
            assert target in made_or_parents | base_image_dirs, (
                f"{name} mounts a volume on {target}, which the Dockerfile does not create")


def test_scripts_the_services_run_exist_in_the_image(compose: dict[str, Any],
                                                     helm: dict[str, Any]) -> None:
    commands = [c for s in compose["services"].values() for c in _command(s)]
    commands += [str(a) for a in helm["migrateDatabaseJob"]["args"]]
    scripts = [c for c in commands if c.startswith(str(IMAGE_SRC) + "/")]
    assert scripts, "the init script is not run by compose or Helm"
    for script in scripts:
        local = ROOT / Path(script).relative_to(IMAGE_SRC)
        assert local.is_file(), f"{script} is not in the checkout the image copies"
        if shutil.which("bash"):
            result = subprocess.run(["bash", "-n", str(local)], capture_output=True, text=True,
                                    check=False)
            assert result.returncode == 0, result.stderr


def test_every_variable_is_guarded_and_secrets_have_no_default(
    compose_raw: dict[str, Any],
) -> None:
    seen: dict[str, set[str | None]] = {}
    for text in _strings(compose_raw):
        for match in VAR.finditer(text.replace("$$", "")):
            seen.setdefault(match.group("name"), set()).add(match.group("op"))
            op, arg = match.group("op"), match.group("arg")
            name = match.group("name")
            assert op in (":?", ":-"), f"${{{name}}} has neither a :? guard nor a default"
            if op == ":?":
                assert arg and arg.strip(), f"${{{name}:?}} gives no message"
            if SECRET_NAME.search(name) or name.endswith("PASSWORDS_FILE"):
                assert op == ":?", f"secret ${{{name}}} must be required, not defaulted"
    assert set(TEST_ENV) <= set(seen), "TEST_ENV names a variable compose no longer uses"
    required = {n for n, ops in seen.items() if ":?" in ops}
    assert required == set(TEST_ENV), (
        f"required variables changed: {sorted(required ^ set(TEST_ENV))}")
    example = ENV_EXAMPLE.read_text()
    for name in sorted(required):
        assert re.search(rf"^{name}=\s*$", example, re.M), (
            f".env.example must list {name} with an empty value")


def test_no_literal_passwords_or_secrets(compose_raw: dict[str, Any],
                                         helm: dict[str, Any]) -> None:
    for name, service in compose_raw["services"].items():
        for key, value in _environment(service).items():
            if key.endswith("_FILE") and str(value).startswith("/run/secrets/"):
                continue  # where a Docker secret is mounted, not the secret
            if SECRET_NAME.search(key):
                assert _only_references(value), f"{name}: {key} has a literal value"
    for text in _strings(compose_raw):
        for match in URL_PASSWORD.finditer(text):
            assert _only_references(match.group("password")), f"literal password in {text!r}"
        for match in re.finditer(r'"password":\s*"([^"]*)"', text):
            assert _only_references(match.group(1)), f"literal password in {text!r}"
    for secret in (compose_raw.get("secrets") or {}).values():
        assert _only_references(str(secret.get("file", ""))), "a secret file has a default"

    def walk(node: Any, path: str) -> None:
        if isinstance(node, Mapping):
            for key, value in node.items():
                here = f"{path}.{key}" if path else str(key)
                if str(key) in HELM_SECRET_VALUES:
                    assert value in (None, ""), f"Helm value {here} holds a secret"
                walk(value, here)
        elif isinstance(node, list):
            for item in node:
                walk(item, path)
        elif isinstance(node, str):
            assert not URL_PASSWORD.search(node), f"Helm value {path} has a URL with a password"
    walk(helm, "")


def test_only_ui_and_flower_published_on_loopback(compose: dict[str, Any]) -> None:
    published = {n for n, s in compose["services"].items() if s.get("ports")}
    assert published == PUBLISHED
    for name in sorted(published):
        for port in compose["services"][name]["ports"]:
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond loopback"


def test_services_have_healthchecks_and_named_volumes(compose: dict[str, Any]) -> None:
    declared = set(compose.get("volumes") or {})
    for name, service in compose["services"].items():
        if name != "init":
            assert service.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
        for mount in service.get("volumes") or []:
            source = str(mount).split(":")[0]
            assert source in declared, f"{name} mounts {source}, not a named volume"
    init = compose["services"]["init"]
    assert init.get("restart") == "no"
    for name in [*sorted(AIRFLOW_SERVICES - {"init"}), "mlflow"]:
        depends = compose["services"][name]["depends_on"]
        assert depends["init"]["condition"] == "service_completed_successfully", name


def test_init_migrates_airflow_and_the_store() -> None:
    script = (ROOT / "deploy" / "bin" / "migrationbox-init.sh").read_text()
    lines = [ln.strip() for ln in script.splitlines()]
    assert "airflow db migrate" in lines
    assert "migrationbox store upgrade" in lines
    assert lines.index("airflow db migrate") < lines.index("migrationbox store upgrade")
    from migrationbox.cli import store_cmd  # the command the script calls exists

    assert hasattr(store_cmd, "_upgrade")


# -- compose: the settings agree with the platform's ------------------------------------


def test_compose_airflow_settings_agree_with_the_platform(
    compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch,
) -> None:
    workers = _worker_services(compose)
    reference_env = _environment(compose["services"]["scheduler-1"])
    cfg = _production_config(reference_env, monkeypatch, celery_workers=len(workers))
    expected = {**_embedded_config(IMAGE_AIRFLOW_HOME), **cfg.airflow_overrides(),
                "AIRFLOW__CORE__PARALLELISM": str(cfg.parallelism), **COMPOSE_DIFFERS}
    for name in sorted(AIRFLOW_SERVICES):
        env = _environment(compose["services"][name])
        for key, want in expected.items():
            assert key in env, f"{name}: {key} missing (the platform sets it)"
            got = env[key]
            if key == "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST":
                assert json.loads(got) == json.loads(want), f"{name}: DAG bundles differ"
            else:
                assert got == want, f"{name}: {key} is {got!r}, the platform sets {want!r}"
    # the store the MigrationBox code will use is the profile's store
    env = reference_env
    assert env["MIGRATIONBOX_STORE_URL"] == cfg.store_url
    assert json.loads(env["AIRFLOW_CONN_MIGRATIONBOX_STORE"]) == cfg.store_connection()
    assert env["MIGRATIONBOX_PLANS_DIR"] == str(IMAGE_PLANS)
    assert cfg.schedulers == len([n for n, s in compose["services"].items()
                                  if _command(s) == ["scheduler"]])
    assert cfg.triggerers == len([n for n, s in compose["services"].items()
                                  if _command(s) == ["triggerer"]])


def test_compose_workers_run_the_profile_command(
    compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch,
) -> None:
    workers = _worker_services(compose)
    cfg = _production_config(_environment(compose["services"]["scheduler-1"]), monkeypatch,
                             celery_workers=len(workers))
    commands = cfg.component_commands()
    replication = _worker_services(compose, "replication")
    assert cfg.replication_workers == len(replication)
    for prefix, names in (("celery-worker", workers),
                          ("celery-replication-worker", replication)):
        for number, name in enumerate(names, start=1):
            want = list(commands[f"{prefix}-{number}"])
            # separate containers: each worker keeps its own log server
            want.remove("--skip-serve-logs")
            host = want.index("--celery-hostname") + 1
            want[host] = want[host].split("@")[0] + "@%h"
            assert _command(compose["services"][name]) == want


def test_mlflow_uses_postgresql_and_the_tasks_use_mlflow(compose: dict[str, Any]) -> None:
    from sqlalchemy.engine import make_url

    mlflow = compose["services"]["mlflow"]
    url = make_url(_environment(mlflow)["MLFLOW_BACKEND_STORE_URI"])
    assert url.get_backend_name() == "postgresql"
    assert "mlflow server" in " ".join(_command(mlflow))
    env = _environment(compose["services"]["celery-worker-1"])
    assert url.database == env["MIGRATIONBOX_MLFLOW_DB"]
    assert env["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"


def test_docker_compose_config_accepts_the_file(tmp_path: Path) -> None:
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("no docker CLI on this machine")
    probe = subprocess.run([docker, "compose", "version"], capture_output=True, text=True,
                           check=False)
    if probe.returncode != 0:
        pytest.skip("docker has no compose plugin here: "
                    f"{(probe.stderr or probe.stdout).strip().splitlines()[0]}")
    env_file = tmp_path / "test.env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in TEST_ENV.items()))
    result = subprocess.run([docker, "compose", "-f", str(COMPOSE), "--env-file", str(env_file),
                             "config", "--quiet"], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr


# -- Helm -------------------------------------------------------------------------------


def _chart_keys() -> tuple[set[str], set[str]]:
    exact, open_ = set(), set()
    for line in CHART_KEYS.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith(".*"):
            open_.add(line[:-2])
        else:
            exact.add(line)
    return exact, open_


def _key_paths(node: Mapping[str, Any], prefix: str = "") -> Iterator[str]:
    for key, value in node.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        yield path
        if isinstance(value, Mapping):
            yield from _key_paths(value, path)


def test_helm_values_use_only_chart_keys(helm: dict[str, Any]) -> None:
    exact, open_ = _chart_keys()
    unknown = [p for p in _key_paths(helm)
               if p not in exact and p not in open_
               and not any(p.startswith(o + ".") for o in open_)]
    assert not unknown, f"keys not in the chart's key list (chart-keys.txt): {unknown}"


def test_helm_values_run_the_production_shape(helm: dict[str, Any]) -> None:
    cfg = ProductionConfig()  # the production profile's defaults: 2 schedulers, 2 workers
    assert helm["executor"] == "CeleryExecutor"
    assert helm["scheduler"]["replicas"] == cfg.schedulers
    assert helm["workers"]["replicas"] == cfg.celery_workers
    # the default worker set serves `default`; a worker set of its own serves only the
    # replication queue, with the profile's replicas and concurrency: every queue the
    # DAGs use has workers, and disk copies never take the other tasks' slots
    from migrationbox.orchestration.graph import REPLICATION_QUEUE
    assert helm["workers"]["celery"]["enableDefault"] is True
    assert _helm_queues(helm["workers"]["args"]) == ({"default"}, None)
    sets = helm["workers"]["celery"]["sets"]
    assert [s["name"] for s in sets] == [REPLICATION_QUEUE]
    replication = sets[0]
    assert replication["queue"] == REPLICATION_QUEUE
    assert replication["replicas"] == cfg.replication_workers
    assert _helm_queues(replication["args"]) == ({REPLICATION_QUEUE},
                                                 cfg.replication_concurrency)
    # two triggerers, as the profile runs them (the heal watch survives one)
    assert helm["triggerer"]["enabled"] and helm["triggerer"]["replicas"] == cfg.triggerers
    assert helm["dagProcessor"]["enabled"]
    assert helm["apiServer"]["replicas"] >= 1
    assert helm["flower"]["enabled"] and helm["flower"]["secretName"]
    assert helm["postgresql"]["enabled"] is False and helm["redis"]["enabled"] is False
    for key in ("metadataSecretName", "resultBackendSecretName", "brokerUrlSecretName"):
        assert helm["data"][key], f"data.{key} must name an existing secret"
    for key in ("fernetKeySecretName", "jwtSecretName", "apiSecretKeySecretName"):
        assert helm[key]
    assert helm["webserver"]["defaultUser"]["enabled"] is False
    assert helm["airflowVersion"] == afr.airflow_version()
    mounts = {m["mountPath"] for m in helm["volumeMounts"]}
    assert str(IMAGE_PLANS.parent) in mounts, "plans must be on a volume every pod shares"


def test_helm_airflow_config_agrees_with_the_platform(helm: dict[str, Any]) -> None:
    replication = helm["workers"]["celery"]["sets"][0]
    cfg = ProductionConfig(worker_concurrency=int(helm["config"]["celery"]["worker_concurrency"]),
                           celery_workers=helm["workers"]["replicas"],
                           replication_workers=replication["replicas"],
                           replication_concurrency=_helm_queues(replication["args"])[1],
                           triggerers=helm["triggerer"]["replicas"])
    # every slot of both worker sets
    expected = {**_embedded_config(IMAGE_AIRFLOW_HOME), **cfg.airflow_overrides(),
                "AIRFLOW__CORE__PARALLELISM": str(cfg.parallelism)}
    set_by_helm = {f"AIRFLOW__{section.upper()}__{key.upper()}": str(value)
                   for section, options in helm["config"].items()
                   for key, value in options.items()}
    # The chart sets these itself from other values (executor, data.*, ports, its own
    # log folder and Execution API URL), so they are not repeated under `config`.
    by_chart = {"AIRFLOW_HOME", "AIRFLOW__CORE__EXECUTOR", "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
                "AIRFLOW__CELERY__BROKER_URL", "AIRFLOW__CELERY__RESULT_BACKEND",
                "AIRFLOW__API__HOST", "AIRFLOW__API__PORT", "AIRFLOW__API__WORKERS",
                "AIRFLOW__LOGGING__BASE_LOG_FOLDER"}
    expected.update(HELM_DIFFERS)
    assert helm["executor"] == expected["AIRFLOW__CORE__EXECUTOR"]
    for key, want in expected.items():
        if key in by_chart:
            continue
        assert key in set_by_helm, f"Helm config lacks {key} (the platform sets it)"
        got = set_by_helm[key]
        if key == "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST":
            assert json.loads(got) == json.loads(want)
        else:
            assert got == want, f"Helm {key} is {got!r}, the platform sets {want!r}"
