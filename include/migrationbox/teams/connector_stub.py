"""A loopback Bot Connector service: what Teams' ``serviceUrl`` answers, for tests and
the demo.

The bot's replies, proactive notifications and card updates go to the Bot Connector REST
API (``/v3/conversations/...``) with a bearer token the bot obtains by OAuth2 client
credentials. ``ConnectorStub`` stands in for both on 127.0.0.1 so that what the bot sends
can be checked without a tenant:

* every request body is validated against the published Bot Connector v3 swagger
  (``schemas/bot-connector-v3.swagger.json``: ``Activity`` for send/reply/update,
  ``ConversationParameters`` for create); a body that does not fit is answered 400 with
  the swagger's ``ErrorResponse`` and recorded with the errors, so a test sees why;
* the bearer token must be one the stub's own token endpoint issued and not expired
  (401 otherwise), so a sender that forgets authentication or caches a token too long
  fails in the tests as it would against Microsoft's service;
* ``fail_next`` makes the next N conversation requests answer 429 with ``Retry-After``
  or a 5xx, for the sender's retry tests.

Nothing here runs in production; the platform's embedded profile may start it for the
demo so that the bot has somewhere to send.
"""

from __future__ import annotations

import copy
import itertools
import json
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from functools import lru_cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import jsonschema

SWAGGER_PATH = (Path(__file__).resolve().parent.parent / "schemas"
                / "bot-connector-v3.swagger.json")
TOKEN_PATH = "/botframework.com/oauth2/v2.0/token"
DEFAULT_SCOPE = "https://api.botframework.com/.default"
MAX_BODY_BYTES = 1024 * 1024

# Path shapes of the operations the bot uses. A serviceUrl may carry a path of its own
# (Teams: https://smba.trafficmanager.net/emea/), so anything may come before /v3/.
_ROUTES: tuple[tuple[str, str, re.Pattern[str], str | None], ...] = (
    ("POST", "create_conversation", re.compile(r"^(?P<prefix>/.*)?/v3/conversations/?$"),
     "ConversationParameters"),
    ("POST", "send_to_conversation",
     re.compile(r"^(?P<prefix>/.*)?/v3/conversations/(?P<cid>[^/]+)/activities/?$"),
     "Activity"),
    ("POST", "reply_to_activity",
     re.compile(r"^(?P<prefix>/.*)?/v3/conversations/(?P<cid>[^/]+)/activities/"
                r"(?P<aid>[^/]+)/?$"), "Activity"),
    ("PUT", "update_activity",
     re.compile(r"^(?P<prefix>/.*)?/v3/conversations/(?P<cid>[^/]+)/activities/"
                r"(?P<aid>[^/]+)/?$"), "Activity"),
)


def _nullable(node: Any) -> Any:
    """Swagger 2.0 marks properties that may be null with ``x-nullable``; JSON Schema
    says it with a type list. Everything else stays as published (enums, types)."""
    if isinstance(node, dict):
        out = {k: _nullable(v) for k, v in node.items()}
        if out.get("x-nullable") is True and isinstance(out.get("type"), str):
            out["type"] = [out["type"], "null"]
        return out
    if isinstance(node, list):
        return [_nullable(v) for v in node]
    return node


@lru_cache(maxsize=1)
def _definitions() -> dict[str, Any]:
    swagger = json.loads(SWAGGER_PATH.read_text(encoding="utf-8"))
    return _nullable(swagger["definitions"])


@lru_cache(maxsize=8)
def _validator(definition: str) -> jsonschema.Draft4Validator:
    schema = {"$ref": f"#/definitions/{definition}", "definitions": _definitions()}
    return jsonschema.Draft4Validator(schema)


def shape_errors(definition: str, body: Any) -> list[str]:
    """Where ``body`` departs from the swagger's ``definition`` (empty: it fits).

    Each error names the path in the body (``attachments/0/content: ...``)."""
    errors = sorted(_validator(definition).iter_errors(body), key=lambda e: list(e.path))
    return [f"{'/'.join(str(p) for p in e.path) or '(body)'}: {e.message[:300]}"
            for e in errors]


@dataclass(frozen=True)
class RecordedRequest:
    """One request the stub received, with what it answered."""

    method: str
    path: str
    operation: str
    conversation_id: str | None
    activity_id: str | None
    headers: dict[str, str]
    body: Any
    status: int
    errors: tuple[str, ...] = ()
    #: The id the stub gave a sent activity (or the created conversation's id).
    answer_id: str | None = None


@dataclass
class _Failure:
    status: int
    retry_after: float | None


@dataclass
class ConnectorStub:
    """Loopback Bot Connector (``url``) plus an OAuth2 token endpoint (``token_url``).

    ``app_id``/``secret``: the client credentials the token endpoint accepts (others get
    ``invalid_client``). ``token_lifetime_s``: ``expires_in`` of issued tokens; tokens
    past it are refused on the conversation endpoints (401).
    """

    app_id: str = "00000000-0000-0000-0000-00000000b07d"
    secret: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    token_lifetime_s: int = 3600
    scope: str = DEFAULT_SCOPE
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _requests: list[RecordedRequest] = field(default_factory=list)
    _tokens: dict[str, float] = field(default_factory=dict)
    _failures: list[_Failure] = field(default_factory=list)
    _ids: itertools.count = field(default_factory=lambda: itertools.count(1))
    token_requests: int = 0

    # -- life cycle ---------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The service URL (what activities carry as ``serviceUrl``), ending in ``/``."""
        if self._server is None:
            raise RuntimeError("ConnectorStub is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/"

    @property
    def token_url(self) -> str:
        return self.url.rstrip("/") + TOKEN_PATH

    def start(self) -> ConnectorStub:
        if self._server is not None:
            return self
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                owner._handle(self, "POST")

            def do_PUT(self) -> None:
                owner._handle(self, "PUT")

            def do_GET(self) -> None:
                owner._handle(self, "GET")

            def do_DELETE(self) -> None:
                owner._handle(self, "DELETE")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,),
                                        daemon=True, name="teams-connector-stub")
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._server = self._thread = None

    def __enter__(self) -> ConnectorStub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- what tests read and steer --------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        """A copy of the conversation requests received so far (not token requests)."""
        with self._lock:
            return list(self._requests)

    def activities(self, operation: str | None = None) -> list[RecordedRequest]:
        """Accepted activity requests (send, reply, update), optionally one operation."""
        return [r for r in self.requests
                if r.status < 300 and r.operation != "create_conversation"
                and (operation is None or r.operation == operation)]

    def clear(self) -> None:
        with self._lock:
            self._requests.clear()

    def fail_next(self, count: int, status: int = 429,
                  retry_after: float | None = 1.0) -> None:
        """Answer the next ``count`` conversation requests with ``status`` (429 or a 5xx);
        ``retry_after`` seconds go into a ``Retry-After`` header when given."""
        if status != 429 and not 500 <= status <= 599:
            raise ValueError(f"fail_next: status {status} is neither 429 nor a 5xx")
        with self._lock:
            self._failures.extend(_Failure(status, retry_after) for _ in range(count))

    def issue_token(self) -> str:
        """A token as the token endpoint would issue it (for tests of the senders)."""
        token = secrets.token_urlsafe(32)
        with self._lock:
            self._tokens[token] = time.time() + self.token_lifetime_s
        return token

    def expire_tokens(self) -> None:
        """Make every issued token expired (a sender must fetch a new one)."""
        with self._lock:
            for token in self._tokens:
                self._tokens[token] = 0.0

    # -- request handling -------------------------------------------------------------

    @staticmethod
    def _reply(handler: BaseHTTPRequestHandler, status: int, body: Any,
               headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode() if body is not None else b""
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json; charset=utf-8")
        handler.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(data)

    @staticmethod
    def _error(code: str, message: str) -> dict[str, Any]:
        """The swagger's ``ErrorResponse``."""
        return {"error": {"code": code, "message": message}}

    def _read(self, handler: BaseHTTPRequestHandler) -> bytes | None:
        try:
            length = int(handler.headers.get("Content-Length") or 0)
        except ValueError:
            return None
        if length < 0 or length > MAX_BODY_BYTES:
            return None
        return handler.rfile.read(length) if length else b""

    def _handle(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        path = urlsplit(handler.path).path
        raw = self._read(handler)
        if raw is None:
            handler.close_connection = True
            self._reply(handler, 413, self._error("BadArgument", "body too large"))
            return
        if method == "POST" and path == TOKEN_PATH:
            self._token(handler, raw)
            return
        for route_method, operation, pattern, definition in _ROUTES:
            match = pattern.match(path)
            if route_method == method and match:
                self._conversation(handler, method, path, operation, match, definition, raw)
                return
        self._reply(handler, 404, self._error("NotFound", f"{method} {path}"))

    def _token(self, handler: BaseHTTPRequestHandler, raw: bytes) -> None:
        """OAuth2 client credentials (RFC 6749 4.4), as login.microsoftonline.com does it."""
        with self._lock:
            self.token_requests += 1
        ctype = (handler.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if ctype != "application/x-www-form-urlencoded":
            self._reply(handler, 400, {"error": "invalid_request",
                                       "error_description": "form body expected"})
            return
        form = {k: v[0] for k, v in parse_qs(raw.decode("utf-8", "replace")).items()}
        if form.get("grant_type") != "client_credentials":
            self._reply(handler, 400, {"error": "unsupported_grant_type",
                                       "error_description": "client_credentials only"})
            return
        if form.get("client_id") != self.app_id or not secrets.compare_digest(
                form.get("client_secret", ""), self.secret):
            self._reply(handler, 401, {"error": "invalid_client",
                                       "error_description": "unknown client or bad secret"})
            return
        if form.get("scope") != self.scope:
            self._reply(handler, 400, {"error": "invalid_scope",
                                       "error_description": f"scope must be {self.scope}"})
            return
        token = self.issue_token()
        self._reply(handler, 200, {"token_type": "Bearer", "access_token": token,
                                   "expires_in": self.token_lifetime_s,
                                   "ext_expires_in": self.token_lifetime_s})

    def _authorized(self, header: str | None) -> bool:
        if not header or not header.startswith("Bearer "):
            return False
        with self._lock:
            expires = self._tokens.get(header[len("Bearer "):].strip())
        return expires is not None and expires > time.time()

    def _conversation(self, handler: BaseHTTPRequestHandler, method: str, path: str,
                      operation: str, match: re.Match[str], definition: str | None,
                      raw: bytes) -> None:
        groups = match.groupdict()
        cid = unquote(groups["cid"]) if groups.get("cid") else None
        aid = unquote(groups["aid"]) if groups.get("aid") else None
        headers = {k: v for k, v in handler.headers.items()}
        body: Any = None
        status, errors, answer_id = 200, [], None
        answer: Any
        extra_headers: dict[str, str] = {}
        with self._lock:
            failure = self._failures.pop(0) if self._failures else None
        try:
            body = json.loads(raw) if raw else None
        except ValueError as exc:
            errors = [f"(body): not JSON: {exc}"]
        if not self._authorized(handler.headers.get("Authorization")):
            status, answer = 401, self._error("Unauthorized",
                                              "missing, unknown or expired bearer token")
        elif failure is not None:
            status = failure.status
            answer = self._error("Throttled" if status == 429 else "ServiceError",
                                 f"injected {status}")
            if failure.retry_after is not None:
                extra_headers["Retry-After"] = f"{failure.retry_after:g}"
        elif errors:
            status, answer = 400, self._error("BadSyntax", errors[0])
        else:
            ctype = (handler.headers.get("Content-Type") or "").split(";")[0].strip().lower()
            if ctype != "application/json":
                errors = [f"(headers): Content-Type {ctype!r}, application/json expected"]
            elif definition is not None:
                errors = shape_errors(definition, body)
            if errors:
                status, answer = 400, self._error("BadArgument", "; ".join(errors)[:2000])
            elif operation == "create_conversation":
                answer_id = f"a:stub-conversation-{next(self._ids)}"
                answer = {"id": answer_id, "serviceUrl": self.url,
                          "activityId": f"stub-activity-{next(self._ids)}"}
            elif operation == "update_activity":
                answer_id = aid
                answer = {"id": aid}
            else:
                answer_id = f"stub-activity-{next(self._ids)}"
                answer = {"id": answer_id}
        record = RecordedRequest(method=method, path=path, operation=operation,
                                 conversation_id=cid, activity_id=aid, headers=headers,
                                 body=copy.deepcopy(body), status=status,
                                 errors=tuple(errors), answer_id=answer_id)
        with self._lock:
            self._requests.append(record)
        self._reply(handler, status, answer, extra_headers)
