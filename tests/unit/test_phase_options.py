"""The typed phase boundary: options, run conf, remedies, source networks, refusals."""

from __future__ import annotations

import ast
import re
import uuid
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import pytest

from migrationbox.inventory.models import ServerRecord
from migrationbox.orchestration.runconf import RUN_FLAGS, RunConfError, WaveRunConf, parse_run_conf
from migrationbox.phases import networks, preflight
from migrationbox.phases.context import Collaborators, PhaseContext, PhaseFailed
from migrationbox.phases.options import (
    SECTIONS,
    PhaseOptions,
    conf_key,
    key_exists,
)
from migrationbox.planning.models import (
    MoveGroup,
    PlanDocument,
    PlanSettings,
    ServerPlan,
    Sizing,
    Wave,
)

PHASES_DIR = Path(preflight.__file__).parent
CONF_PATH = re.compile(r"\bconf ([a-z_]+\.[a-z_]+)")


def _plan(estate: str = "unit") -> PlanDocument:
    sizing = Sizing(region="us-east-1", method="rule", required_vcpu=1, required_memory_gib=1,
                    instance_type="t3.small", vcpu=2, memory_gib=2, hourly_usd=0.02,
                    monthly_usd=15, storage_gb=20, price_source="test")
    servers = [ServerPlan(server_id=sid, hostname=f"{sid}.corp.example", environment="test",
                          role="web", criticality=0.1, move_group=f"mg-{sid}", ports=[80],
                          data_size_gb=1, sizing=sizing) for sid in ("a-01", "b-01")]
    return PlanDocument(
        estate=estate, version=1, created_at=datetime(2026, 5, 1, tzinfo=UTC),
        settings=PlanSettings(), servers=servers,
        move_groups=[MoveGroup(group_id=f"mg-{s.server_id}", server_ids=[s.server_id])
                     for s in servers],
        waves=[Wave(number=1, name="w1", server_ids=["a-01", "b-01"],
                    move_groups=["mg-a-01", "mg-b-01"], environment="test",
                    criticality=0.1, estimated_hours=1, needs_approval=False)],
    )


def _record(sid: str, ip: str, subnets: list[str] | None = None) -> ServerRecord:
    return ServerRecord.model_validate({
        "server_id": sid, "hostname": f"{sid}.corp.example", "ip_addresses": [ip],
        "os": {"type": "Linux"}, "hardware": {"cpu_cores": 2, "ram_gb": 4},
        "performance_baseline": {"cpu_avg_utilization_pct": 20,
                                 "memory_avg_utilization_pct": 30},
        **({"network": {"subnets": subnets}} if subnets else {}),
    })


# -- the model ---------------------------------------------------------------------------

def test_defaults_are_the_behaviour_of_a_run_that_sets_nothing():
    from migrationbox.iac.design import DEFAULT_VPC_CIDR

    o = PhaseOptions()
    assert o.network.target_vpc_cidr == DEFAULT_VPC_CIDR and o.network.source_networks is None
    assert o.cutover.steps == [5, 25, 50, 100] and o.cutover.dwell_seconds == 5.0
    assert (o.cutover.ttl_seconds, o.cutover.final_sync, o.cutover.probe_interval_seconds) \
        == (30, True, 1.0)
    assert (o.health.probe_requests, o.health.timeout_seconds) == (20, 5.0)
    assert (o.replicate.block_mib, o.replicate.delta_pct, o.replicate.delta_mib,
            o.replicate.max_rounds, o.replicate.workers) == (4.0, 1.0, 1.0, 10, 2)
    assert o.validate_.gx and o.validate_.performance
    assert not o.teardown.keep_landing_zone and o.provision.health_check_path == "/health"


def test_every_option_is_described():
    for name, section in SECTIONS.items():
        for field_name, info in section.model_fields.items():
            assert info.description, f"{name}.{field_name} has no description"


def test_run_conf_is_the_sections_plus_the_run_flags():
    fields = {info.alias or name for name, info in WaveRunConf.model_fields.items()}
    assert fields == set(SECTIONS) | set(RUN_FLAGS)


@pytest.mark.parametrize(("conf", "path"), [
    ({"cutover": {"stepz": [5]}}, "conf.cutover.stepz"),
    ({"cutover_steps": [5, 100]}, "conf.cutover_steps"),  # the old flat keys are gone
    ({"validate": {"gx": "maybe"}}, "conf.validate.gx"),
    ({"replicate": {"block_mib": 0}}, "conf.replicate.block_mib"),
    ({"cutover": {"steps": [50, 5]}}, "conf.cutover.steps"),
    ({"adapter": "x"}, "conf.adapter"),  # collaborators are never options
])
def test_a_bad_run_conf_names_the_key_path(conf, path):
    with pytest.raises(RunConfError, match=re.escape(path)):
        parse_run_conf(conf)


def test_phase_options_take_the_conf_over_the_site_defaults():
    conf = parse_run_conf({"dry_run": True, "cutover": {"dwell_seconds": 1}})
    options = conf.phase_options({"cutover": {"steps": [10, 100], "dwell_seconds": 9},
                                  "replicate": {"delta_mib": 2}})
    assert options.cutover.dwell_seconds == 1  # the conf wins
    assert options.cutover.steps == [10, 100] and options.replicate.delta_mib == 2
    assert isinstance(options, PhaseOptions) and not isinstance(options, WaveRunConf)
    with pytest.raises(RunConfError, match=r"conf\.cutover\.steps"):
        parse_run_conf({}).phase_options({"cutover": {"steps": [0]}})


def test_merged_applies_sections_and_validates():
    base = PhaseOptions.model_validate({"replicate": {"block_mib": 0.25}})
    out = base.merged({"replicate": {"workers": 4}, "validate": {"gx": False}})
    assert (out.replicate.block_mib, out.replicate.workers, out.validate_.gx) == (0.25, 4, False)
    with pytest.raises(ValueError, match="workers"):
        base.merged({"replicate": {"workers": 0}})


# -- remedies name keys the run conf accepts ----------------------------------------------

def _phase_sources() -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted(PHASES_DIR.glob("*.py"))}


def test_every_conf_key_a_phase_names_is_accepted_by_the_run_conf():
    named: set[str] = set()
    for name, source in _phase_sources().items():
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "conf_key":
                arg = node.args[0]
                assert isinstance(arg, ast.Constant), f"{name}: conf_key needs a literal"
                named.add(arg.value)
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                named.update(CONF_PATH.findall(node.value))
    assert {"preflight.vcpu_quota", "network.source_networks",
            "network.target_vpc_cidr", "preflight.residency_equivalents"} <= named
    unknown = sorted(p for p in named if not key_exists(p))
    assert not unknown, f"phases name options the run conf refuses: {unknown}"
    for path in named:  # and the run conf really takes each of them
        section, field_name = path.split(".")
        assert field_name in type(getattr(WaveRunConf(), _attr(section))).model_fields


def _attr(section: str) -> str:
    return "validate_" if section == "validate" else section


def _docstrings(tree: ast.AST) -> set[int]:
    found = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) \
                and isinstance(body[0].value, ast.Constant):
            found.add(id(body[0].value))
    return found


def test_no_phase_message_names_an_old_style_option():
    old = re.compile(r"\b(run option|options\.[a-z_]+|options\[)")
    offenders = []
    for name, source in _phase_sources().items():
        tree = ast.parse(source)
        docs = _docstrings(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) \
                    and id(node) not in docs and old.search(node.value):
                offenders.append(f"{name}: {node.value[:70]!r}")
    assert not offenders


def test_conf_key_refuses_an_unknown_option():
    assert conf_key("preflight.vcpu_quota") == "conf preflight.vcpu_quota"
    with pytest.raises(KeyError):
        conf_key("preflight.vcpu_quotas")
    with pytest.raises(KeyError):
        conf_key("vcpu_quota")


def _ctx(conf: dict | None = None, **kw) -> PhaseContext:
    return PhaseContext(plan=_plan(), wave_number=1,
                        options=parse_run_conf(conf or {}).phase_options(), **kw)


def _remedy_keys(check: preflight.Check) -> list[str]:
    return CONF_PATH.findall(check.remedy) + CONF_PATH.findall(check.detail)


def test_the_remedy_without_source_networks_is_a_conf_that_works():
    facts = preflight.SourceFacts()
    check = preflight.check_cidr(None, _ctx(), facts, "10.100.0.0/16")
    assert check.status == preflight.FAIL
    assert _remedy_keys(check) == ["network.source_networks"]
    # doing what it says: the run conf takes it and the check passes
    ctx = _ctx({"network": {"source_networks": ["192.168.1.0/24"]}})
    facts.networks = networks.from_conf_or_records(ctx, None)
    assert preflight.check_cidr(None, ctx, facts, "10.100.0.0/16").status == preflight.PASS


def test_the_remedy_for_an_overlapping_cidr_is_a_conf_that_works():
    ctx = _ctx({"network": {"source_networks": ["10.100.5.0/24"]}})
    facts = preflight.SourceFacts(networks=networks.from_conf_or_records(ctx, None))
    check = preflight.check_cidr(None, ctx, facts, ctx.options.network.target_vpc_cidr)
    assert check.status == preflight.FAIL
    assert _remedy_keys(check) == ["network.target_vpc_cidr"]
    fixed = _ctx({"network": {"source_networks": ["10.100.5.0/24"],
                              "target_vpc_cidr": "10.200.0.0/16"}})
    assert preflight.check_cidr(None, fixed, facts, fixed.options.network.target_vpc_cidr) \
        .status == preflight.PASS


def test_the_residency_remedy_is_a_conf_that_works():
    conf = {"preflight": {"data_residency": "EU"}}
    ctx = _ctx(conf)
    facts = preflight.gather_facts(ctx, estate={})
    check = preflight.check_residency(ctx, facts)
    assert check.status == preflight.FAIL
    assert _remedy_keys(check) == ["preflight.residency_equivalents"]
    ok = _ctx({"preflight": {"data_residency": "EU", "residency_equivalents": {"EU": ["US"]}}})
    assert preflight.check_residency(ok, preflight.gather_facts(ok, estate={})).status \
        == preflight.PASS


# -- one source of source networks ---------------------------------------------------------

def test_source_networks_come_from_the_conf_or_the_records():
    records = {"a-01": _record("a-01", "172.20.5.11", ["172.20.5.0/24"]),
               "b-01": _record("b-01", "172.20.9.7")}
    from_records = networks.source_networks(_ctx(), loader=lambda estate: records)
    assert from_records.cidrs() == ["172.20.5.0/24", "172.20.9.7/32"]
    assert from_records.per_server["b-01"] == ["172.20.9.7/32"]
    assert from_records.origin.startswith("discovery records")

    def never(estate: str) -> None:
        raise AssertionError("the conf wins: the store is not read")

    given = networks.source_networks(
        _ctx({"network": {"source_networks": ["192.168.0.0/16", "192.168.4.0/24"]}}), never)
    assert given.cidrs() == ["192.168.0.0/16"] and given.origin == "conf network.source_networks"
    per_server = networks.source_networks(
        _ctx({"network": {"source_networks": {"a-01": ["10.1.0.0/24"], "b-01": ["bogus"]}}}),
        never)
    assert per_server.cidrs() == ["10.1.0.0/24"] and per_server.invalid() == ["b-01: 'bogus'"]


def test_no_store_means_no_networks_with_the_reason():
    def broken(estate: str) -> None:
        raise OSError("store down")

    found = networks.source_networks(_ctx(), broken)
    assert found.cidrs() == [] and "store down" in found.origin
    assert "not found" in networks.source_networks(_ctx(), lambda e: None).origin


def test_preflight_design_and_provision_see_the_same_networks(monkeypatch):
    """Pre-flight designs the wave with the networks provision builds its rules from."""
    from migrationbox.phases import provision

    records = {"a-01": _record("a-01", "172.20.5.11", ["172.20.5.0/24"]),
               "b-01": _record("b-01", "172.20.9.7")}
    ctx = _ctx()
    facts = preflight.gather_facts(ctx, loader=lambda e: records)
    design = provision.build_design(ctx, ["us-east-1a", "us-east-1b"], loader=lambda e: records)
    assert facts.networks.cidrs() == list(design.source_networks) == [
        "172.20.5.0/24", "172.20.9.7/32"]


def test_provision_refuses_source_networks_that_are_not_cidrs():
    from migrationbox.phases import provision

    ctx = _ctx({"network": {"source_networks": ["10.0.0.0/8", "ten-dot"]}})
    with pytest.raises(PhaseFailed, match=r"estate: 'ten-dot'"):
        provision.build_design(ctx, ["us-east-1a", "us-east-1b"])


# -- collaborators are not options ---------------------------------------------------------

def test_collaborators_travel_beside_the_options():
    seen: list[str] = []
    ctx = _ctx(collaborators=Collaborators(on_progress=lambda m, d: seen.append(m)))
    from migrationbox.phases._cloud import progress

    progress(ctx, "hello")
    assert seen == ["hello"]
    assert "on_progress" not in PhaseOptions.model_json_schema()["properties"]


# -- a bad conf or a missing plan fails at once and is recorded ----------------------------

@pytest.fixture
def store(tmp_path, monkeypatch):
    from migrationbox.inventory.models import Estate
    from migrationbox.store import repository
    from migrationbox.store.db import dispose, session_scope

    monkeypatch.setenv("MIGRATIONBOX_STORE_URL", f"sqlite:///{tmp_path / 'store.db'}")
    estate = f"e{uuid.uuid4().hex[:6]}"
    with session_scope() as session:
        repository.save_estate(session, Estate(name=estate, servers=[
            _record("a-01", "172.20.5.11"), _record("b-01", "172.20.5.12")]))
        plan = repository.save_plan(session, _plan(estate))
    yield plan
    dispose()


def _airflow_context(conf: dict, run_id: str = "manual__1") -> dict:
    return {"dag_run": SimpleNamespace(conf=conf, run_id=run_id),
            "ti": SimpleNamespace(task_id="preflight")}


def _phase_runs(estate: str, run_id: str):
    from migrationbox.store import repository
    from migrationbox.store.db import session_scope

    with session_scope(read_only=True) as session:
        return (repository.phase_runs(session, estate, 1, run_id),
                [e for e in repository.events(session, estate) if e.dag_run_id == run_id])


def test_a_bad_run_conf_fails_the_task_at_once_and_is_recorded(store):
    from airflow.sdk.exceptions import AirflowFailException

    from migrationbox.orchestration import tasks

    context = _airflow_context({"cutover": {"stepz": [5]}})
    with pytest.raises(AirflowFailException, match=r"conf\.cutover\.stepz"):
        tasks.run_phase("preflight", store.estate, 1, store.version, **context)
    runs, events = _phase_runs(store.estate, "manual__1")
    assert [(r.phase, r.status) for r in runs] == [("preflight", "failed")]
    assert "conf.cutover.stepz" in runs[0].summary
    assert runs[0].details["refused"] == "RunConfError"
    assert any("conf.cutover.stepz" in e.message for e in events)


def test_a_missing_plan_fails_the_task_at_once_and_is_recorded(store):
    from airflow.sdk.exceptions import AirflowFailException

    from migrationbox.orchestration import tasks

    context = _airflow_context({}, run_id="manual__2")
    with pytest.raises(AirflowFailException, match=rf"plan {store.estate} v99 is not in"):
        tasks.gate("previous_wave_completed", store.estate, 1, 99, **context)
    runs, _events = _phase_runs(store.estate, "manual__2")
    assert [(r.phase, r.status, r.details["refused"]) for r in runs] == [
        ("previous_wave_completed", "failed", "PlanMissing")]


def test_the_dag_run_context_carries_store_endpoints_and_site_defaults(store, monkeypatch):
    from migrationbox.orchestration import tasks

    monkeypatch.setenv("MIGRATIONBOX_CUTOVER_CHECK_SECONDS", "7")
    ctx = tasks.build_context(store.estate, 1, store.version,
                              _airflow_context({"cutover": {"steps": [50, 100]}}))
    assert ctx.options.cutover.dwell_seconds == 7 and ctx.options.cutover.steps == [50, 100]
    assert ctx.endpoints is None  # none registered: the phases fall back to the lab's file
    assert ctx.collaborators.on_progress is not None and ctx.collaborators.adapter is None


def test_phase_failed_is_a_migrationbox_error():
    from migrationbox.errors import MigrationBoxError

    assert issubclass(PhaseFailed, MigrationBoxError) and issubclass(PhaseFailed, RuntimeError)
    assert issubclass(RunConfError, ValueError)


# -- the trigger form's Params are built from the same model ------------------------------

def test_trigger_params_are_the_run_conf_fields():
    from airflow.sdk import Param, ParamsDict
    from airflow.sdk.definitions.param import ParamValidationError

    from migrationbox.orchestration.runconf import param_specs

    specs = param_specs()
    assert set(specs) == set(SECTIONS) | set(RUN_FLAGS)
    assert all(spec["description"] for spec in specs.values())
    params = ParamsDict({k: Param(**v) for k, v in specs.items()})
    defaults = params.validate()
    assert defaults["cutover"] == {} and defaults["dry_run"] is False
    parse_run_conf(defaults)  # a form left alone is a valid run conf that sets nothing
    for bad in ({"cutover": {"stepz": [5]}}, {"approvals": "sometimes"},
                {"replicate": {"block_mib": 0}}):
        key, value = next(iter(bad.items()))
        with pytest.raises(ParamValidationError):
            Param(**{**specs[key], "default": value}).resolve()


def test_the_database_service_credentials_route_is_a_run_option():
    """Secrets Manager by default (no password in a DMS endpoint); the password route
    only when a run asks for it; anything else refused naming the key."""
    default = PhaseOptions().cloud.database_service_options()
    assert default == {"credentials": "secrets-manager"}
    chosen = PhaseOptions.model_validate(
        {"cloud": {"database_credentials": "password", "poll_seconds": 0.5,
                   "database_secrets_role_arn": "arn:aws:iam::123456789012:role/dms"}})
    assert chosen.cloud.database_service_options() == {
        "credentials": "password", "poll_seconds": 0.5,
        "secrets_role_arn": "arn:aws:iam::123456789012:role/dms"}
    with pytest.raises(RunConfError, match=r"cloud\.database_credentials"):
        parse_run_conf({"cloud": {"database_credentials": "plaintext"}})
