"""Test support: an OpenID metadata + JWKS server on loopback and a token signer, standing
in for login.botframework.com the way the Bot Connector signs its calls.

Tests (and later the endpoint's integration tests) make their own RSA keys, publish them
here over a real HTTP connection, and sign tokens with them. Nothing here is used by the
bot at run time.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from migrationbox.teams.auth import ALGORITHM, BOTFRAMEWORK_ISSUER

SERVICE_URL = "https://smba.trafficmanager.net/emea/"


@dataclass
class TestKey:
    kid: str
    private: rsa.RSAPrivateKey
    endorsements: tuple[str, ...] | None = ("msteams",)

    def jwk(self) -> dict[str, Any]:
        entry: dict[str, Any] = RSAAlgorithm.to_jwk(self.private.public_key(), as_dict=True)
        entry.update({"kid": self.kid, "use": "sig", "alg": ALGORITHM})
        if self.endorsements is not None:
            entry["endorsements"] = list(self.endorsements)
        return entry

    def sign(self, claims: dict[str, Any], *, kid: str | None = None,
             headers: dict[str, Any] | None = None) -> str:
        return jwt.encode(claims, self.private, algorithm=ALGORITHM,
                          headers={"kid": kid or self.kid, **(headers or {})})


def make_key(kid: str, endorsements: tuple[str, ...] | None = ("msteams",)) -> TestKey:
    return TestKey(kid, rsa.generate_private_key(public_exponent=65537, key_size=2048),
                   endorsements)


def bot_claims(app_id: str, *, now: float | None = None, lifetime: float = 3600,
               service_url: str = SERVICE_URL, issuer: str = BOTFRAMEWORK_ISSUER,
               **extra: Any) -> dict[str, Any]:
    """Claims shaped like a Bot Connector token's."""
    now = time.time() if now is None else now
    claims: dict[str, Any] = {"iss": issuer, "aud": app_id, "serviceurl": service_url,
                              "nbf": int(now) - 5, "iat": int(now) - 5,
                              "exp": int(now + lifetime)}
    claims.update(extra)
    return claims


@dataclass
class JwksServer:
    """Serves ``/openid`` (metadata) and ``/keys`` (JWKS) on 127.0.0.1 until stopped.

    ``keys`` can be replaced while running (key rotation); ``fail`` makes both documents
    answer 503; ``hits`` counts requests per path."""

    keys: list[TestKey] = field(default_factory=list)
    issuer: str = BOTFRAMEWORK_ISSUER
    fail: bool = False
    hits: dict[str, int] = field(default_factory=dict)
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        assert self._server is not None, "server not started"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def metadata_url(self) -> str:
        return f"{self.base_url}/openid"

    def start(self) -> JwksServer:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner.hits[self.path] = owner.hits.get(self.path, 0) + 1
                if owner.fail:
                    self.send_error(503)
                    return
                if self.path == "/openid":
                    body = {"issuer": owner.issuer, "jwks_uri": f"{owner.base_url}/keys",
                            "id_token_signing_alg_values_supported": [ALGORITHM]}
                elif self.path == "/keys":
                    body = {"keys": [k.jwk() for k in owner.keys]}
                else:
                    self.send_error(404)
                    return
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,),
                                        daemon=True,
                                        name="teams-jwks-server")
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._server = self._thread = None

    def __enter__(self) -> JwksServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
