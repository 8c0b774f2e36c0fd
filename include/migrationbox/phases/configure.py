"""Phase 4, configure: point the target's config at target endpoints; move secrets out.

For every server of the wave, the config files on its target disks (text files under an
``etc`` folder or with a config suffix) are rewritten:

* host names of the estate's servers (full and short) become their target DNS names,
  ``<short-hostname>.<estate>.migrationbox.internal``, or ``details.target_host`` of the
  server's endpoints where set;
* secrets (passwords in connection URLs, ``*_PASSWORD``/``*_SECRET``/``*_TOKEN``/
  ``*_API_KEY`` settings, ``password=`` in libpq conninfo strings) are stored in the
  cloud's secret store and replaced by a reference ``{{resolve:secretsmanager:NAME}}``.
  Secret values are never logged or returned; only their names are.

The rewrite is a pure function of the source text (``rewrite_text``), so it is idempotent
(a second run finds nothing to change) and the validate phase can recompute what each
configured file must contain. Files are replaced atomically, secrets stored before the
file that referenced them changes, and the disk's manifest is updated so that it keeps
describing the target; ``.migrationbox/configured.json`` on the target lists the files.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from migrationbox.endpoints import Endpoint, by_server
from migrationbox.iac.design import record_name as target_dns_name
from migrationbox.phases._cloud import adapter_for, progress, write_json
from migrationbox.phases.context import PhaseContext, PhaseFailed, PhaseResult
from migrationbox.phases.replicate import endpoints_or_fail
from migrationbox.replication.disk import refresh_manifest
from migrationbox.replication.manifest import CONFIGURED_NAME, META_DIR, ManifestError, walk_tree

PHASE = "configure"
CONFIG_SUFFIXES = {
    ".env", ".conf", ".cfg", ".cnf", ".ini", ".yaml", ".yml", ".properties", ".toml",
    ".json", ".xml", ".config",
}
MAX_CONFIG_BYTES = 1024 * 1024
REF_PREFIX = "{{resolve:secretsmanager:"
_REF_RE = re.compile(r"\{\{resolve:[^}]*\}\}")
_URL_RE = re.compile(
    r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://(?P<user>[^:/@\s'\"]*):(?P<pw>[^@/\s'\"]+)@"
    r"(?P<host>[^/:\s'\"?#@]+)"
)
_SECRET_KEY = r"[A-Za-z0-9_.-]*(?:password|passwd|secret|token|api_key|apikey|private_key)"
_ENV_RE = re.compile(rf"^(?P<lead>\s*(?:export\s+)?)(?P<key>{_SECRET_KEY})(?P<sep>\s*[=:]\s*)"
                     r"(?P<q>['\"]?)(?P<val>[^'\"\s#][^'\"\n#]*?)(?P=q)\s*$", re.I | re.M)
_CONNINFO_RE = re.compile(r"^(?P<setting>[\w.]+)\s*=\s*'(?P<body>[^'\n]*)'", re.M)
_CONNINFO_PW = re.compile(r"(?<![\w])password=(?P<pw>[^\s']+)")


@dataclass
class Rewrite:
    text: str
    hosts_replaced: int = 0
    secrets: list[tuple[str, str]] = field(default_factory=list)  # (secret name, value)

    @property
    def secret_names(self) -> list[str]:
        return [n for n, _ in self.secrets]


def host_map(ctx: PhaseContext, endpoints: list[Endpoint]) -> dict[str, str]:
    """Source host name (full and short, lower case) → target DNS name, for the estate."""
    overrides = {e.server_id: e.details["target_host"] for e in endpoints
                 if e.details.get("target_host")}
    mapping: dict[str, str] = {}
    for s in ctx.plan.servers:
        target = overrides.get(s.server_id) or target_dns_name(ctx.estate, s.hostname)
        mapping[s.hostname.lower()] = target
        mapping.setdefault(s.hostname.split(".", 1)[0].lower(), target)
    return mapping


def host_pattern(mapping: dict[str, str]) -> re.Pattern[str] | None:
    """Whole host names only: not part of a longer name, nor the head of a longer FQDN
    (which is what keeps an already rewritten target name from matching again)."""
    if not mapping:
        return None
    names = sorted(mapping, key=len, reverse=True)
    alternation = "|".join(re.escape(n) for n in names)
    return re.compile(rf"(?<![A-Za-z0-9.-])({alternation})(?![A-Za-z0-9-]|\.[A-Za-z0-9])", re.I)


def _slug(value: str) -> str:
    return re.sub(r"[^A-Za-z0-9/_+=.@-]", "-", value).strip("-") or "value"


def secret_name(estate: str, server_id: str, rel: str, key: str) -> str:
    """Deterministic secret name: ``migrationbox/<estate>/<server>/<file>/<key>``."""
    name = f"migrationbox/{estate}/{server_id}/{_slug(rel.replace('/', '_'))}/{_slug(key)}"
    if len(name) > 250:  # the name is also the secret's Name tag, which AWS caps at 256
        name = name[:230] + "-" + hashlib.sha256(name.encode()).hexdigest()[:16]
    return name


def rewrite_text(
    text: str,
    pattern: re.Pattern[str] | None,
    mapping: dict[str, str],
    name_for: Callable[[str], str],
) -> Rewrite:
    """Move secrets to references, then rewrite host names outside references.

    ``name_for(key)`` gives the secret name for a key; keys come from the *source* text
    (setting name, or ``user@host`` of a URL), so the result depends on the input only.
    """
    out = Rewrite(text=text)
    seen: dict[str, str] = {}

    def ref(key: str, value: str) -> str:
        name = name_for(key)
        n = 1
        while name in seen and seen[name] != value:  # same key, another value: new name
            n += 1
            name = name_for(f"{key}-{n}")
        if name not in seen:
            seen[name] = value
            out.secrets.append((name, value))
        return f"{REF_PREFIX}{name}}}}}"

    def url_sub(m: re.Match[str]) -> str:
        pw = m.group("pw")
        if pw.startswith("{{") or pw.startswith("${"):
            return m.group(0)
        key = f"{m.group('user') or 'user'}@{m.group('host')}"
        return f"{m.group('scheme')}://{m.group('user')}:{ref(key, pw)}@{m.group('host')}"

    def env_sub(m: re.Match[str]) -> str:
        val = m.group("val")
        if val.startswith("{{") or val.startswith("${") or "://" in val:
            return m.group(0)  # references, placeholders; URLs are handled by url_sub
        q = m.group("q")
        return f"{m.group('lead')}{m.group('key')}{m.group('sep')}{q}{ref(m.group('key'), val)}{q}"

    def conninfo_sub(m: re.Match[str]) -> str:
        setting = m.group("setting")

        def pw_sub(p: re.Match[str]) -> str:
            if p.group("pw").startswith("{{"):
                return p.group(0)
            return f"password={ref(setting, p.group('pw'))}"

        body = _CONNINFO_PW.sub(pw_sub, m.group("body"))
        return m.group(0).replace(m.group("body"), body, 1)

    text = _URL_RE.sub(url_sub, text)
    text = _CONNINFO_RE.sub(conninfo_sub, text)
    text = _ENV_RE.sub(env_sub, text)
    if pattern is not None:
        pieces: list[str] = []
        last = 0
        for m in _REF_RE.finditer(text):
            pieces.append(_rewrite_hosts(text[last:m.start()], pattern, mapping, out))
            pieces.append(m.group(0))
            last = m.end()
        pieces.append(_rewrite_hosts(text[last:], pattern, mapping, out))
        text = "".join(pieces)
    out.text = text
    return out


def _rewrite_hosts(segment: str, pattern: re.Pattern[str], mapping: dict[str, str],
                   out: Rewrite) -> str:
    def sub(m: re.Match[str]) -> str:
        out.hosts_replaced += 1
        return mapping[m.group(1).lower()]

    return pattern.sub(sub, segment)


def is_config_file(rel: str, size: int) -> bool:
    parts = rel.split("/")
    return size <= MAX_CONFIG_BYTES and (
        "etc" in parts[:-1] or Path(rel).suffix.lower() in CONFIG_SUFFIXES
    )


def read_text_file(path: Path) -> str | None:
    """The file as UTF-8 text, or None for binary or undecodable content."""
    data = path.read_bytes()
    if b"\x00" in data[:8192]:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def config_files(tree: Path) -> list[str]:
    import stat as stat_mod

    return [
        rel for rel, st in walk_tree(tree)
        if stat_mod.S_ISREG(st.st_mode) and is_config_file(rel, st.st_size)
    ]


def _atomic_replace(path: Path, text: str) -> None:
    mode = path.stat().st_mode & 0o7777
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_configured(target: Path) -> dict[str, Any]:
    try:
        return json.loads((target / META_DIR / CONFIGURED_NAME).read_text())
    except FileNotFoundError:
        return {}


def _configure_disk(ctx: PhaseContext, server_id: str, ep: Endpoint, mapping: dict[str, str],
                    pattern: re.Pattern[str] | None, store: Callable[[str, str], None],
                    ) -> dict[str, Any]:
    target = ep.target_path
    if not target.is_dir():
        raise PhaseFailed(PHASE, f"{ep.label()}: target {target} does not exist (replicate first)")
    record = load_configured(target)
    files = dict(record.get("files", {}))
    changed: list[str] = []
    hosts = 0
    secrets: list[str] = []
    for rel in config_files(target):
        path = target / rel
        text = read_text_file(path)
        if text is None:
            continue
        result = rewrite_text(
            text, pattern, mapping,
            lambda key, rel=rel: secret_name(ctx.estate, server_id, rel, key),
        )
        if result.text == text:
            continue
        hosts += result.hosts_replaced
        secrets += result.secret_names
        if ctx.dry_run:
            changed.append(rel)
            continue
        for name, value in result.secrets:
            store(name, value)  # before the file drops the value: a crash loses nothing
        _atomic_replace(path, result.text)
        changed.append(rel)
        files[rel] = {
            "hosts_replaced": result.hosts_replaced,
            "secrets": result.secret_names,
            "sha256": hashlib.sha256(result.text.encode()).hexdigest(),
        }
    if changed and not ctx.dry_run:
        try:
            refresh_manifest(target, changed)
        except ManifestError as exc:
            raise PhaseFailed(PHASE, f"{ep.label()}: {exc}") from exc
        write_json(target / META_DIR / CONFIGURED_NAME, {"files": files})
    return {"files_rewritten": changed, "hosts_replaced": hosts, "secrets": secrets,
            "configured_files": sorted(files)}


def run(ctx: PhaseContext) -> PhaseResult:
    endpoints = endpoints_or_fail(ctx, PHASE)
    mapping = host_map(ctx, endpoints)
    pattern = host_pattern(mapping)
    adapter = None if ctx.dry_run else adapter_for(ctx, PHASE)

    from migrationbox.cloud.base import resource_tags

    per_server: dict[str, Any] = {}
    for server in ctx.servers:
        disks = by_server(endpoints, server.server_id, "disk")
        if not disks:
            per_server[server.server_id] = {"skipped": "no disk endpoints"}
            continue

        def store(name: str, value: str, sid: str = server.server_id) -> None:
            assert adapter is not None
            adapter.put_secret(name, value, resource_tags(ctx.estate, ctx.wave_number, name, sid))

        info = {ep.name: _configure_disk(ctx, server.server_id, ep, mapping, pattern, store)
                for ep in disks}
        per_server[server.server_id] = {
            "disks": info,
            "files_rewritten": sum(len(d["files_rewritten"]) for d in info.values()),
            "hosts_replaced": sum(d["hosts_replaced"] for d in info.values()),
            "secrets_stored": sorted({n for d in info.values() for n in d["secrets"]}),
            "target_dns_name": target_dns_name(ctx.estate, server.hostname),
        }
        progress(ctx, f"{server.server_id}: {per_server[server.server_id]['files_rewritten']} "
                      f"config files rewritten, "
                      f"{len(per_server[server.server_id]['secrets_stored'])} secrets stored",
                 {"server_id": server.server_id})
    files = sum(d.get("files_rewritten", 0) for d in per_server.values())
    secrets = sum(len(d.get("secrets_stored", [])) for d in per_server.values())
    verb = "would rewrite" if ctx.dry_run else "rewrote"
    return PhaseResult(
        phase=PHASE,
        ok=True,
        summary=f"{verb} {files} config files; {secrets} secrets "
                f"{'found' if ctx.dry_run else 'moved to the secret store'}",
        details={"servers": per_server, "host_map_size": len(mapping), "dry_run": ctx.dry_run},
    )
