"""ConnectorStub: the loopback Bot Connector checks what senders post against the
published swagger, demands the tokens it issued, records, and fails on request."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

from migrationbox.teams.connector_stub import ConnectorStub, shape_errors

CONVERSATION = "19:abc@thread.tacv2;messageid=1700000000000"


@pytest.fixture
def stub() -> Iterator[ConnectorStub]:
    with ConnectorStub() as running:
        yield running


def _token(stub: ConnectorStub, **overrides: str) -> requests.Response:
    form = {"grant_type": "client_credentials", "client_id": stub.app_id,
            "client_secret": stub.secret, "scope": stub.scope, **overrides}
    return requests.post(stub.token_url, data=form, timeout=5)


def _activity(**extra: object) -> dict[str, object]:
    return {"type": "message", "text": "hello", "from": {"id": "28:bot", "name": "MB"},
            "conversation": {"id": CONVERSATION}, "recipient": {"id": "29:user"},
            **extra}


def _headers(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_token_endpoint_issues_tokens_for_the_right_client_only(stub: ConnectorStub) -> None:
    good = _token(stub)
    assert good.status_code == 200
    body = good.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 3600
    assert body["access_token"]
    assert _token(stub, client_secret="wrong").json()["error"] == "invalid_client"
    assert _token(stub, client_id="someone-else").status_code == 401
    assert _token(stub, grant_type="password").json()["error"] == "unsupported_grant_type"
    assert _token(stub, scope="https://graph.microsoft.com/.default").json()["error"] == \
        "invalid_scope"
    as_json = requests.post(stub.token_url, json={"grant_type": "client_credentials"},
                            timeout=5)
    assert as_json.status_code == 400


def test_send_reply_update_and_create_are_recorded_with_ids(stub: ConnectorStub) -> None:
    token = _token(stub).json()["access_token"]
    base = f"{stub.url}v3/conversations/{requests.utils.quote(CONVERSATION, safe='')}"
    sent = requests.post(f"{base}/activities", json=_activity(), headers=_headers(token),
                         timeout=5)
    assert sent.status_code == 200, sent.text
    activity_id = sent.json()["id"]
    reply = requests.post(f"{base}/activities/{activity_id}",
                          json=_activity(replyToId=activity_id), headers=_headers(token),
                          timeout=5)
    assert reply.status_code == 200
    update = requests.put(f"{base}/activities/{activity_id}",
                          json=_activity(id=activity_id, text="edited"),
                          headers=_headers(token), timeout=5)
    assert update.json() == {"id": activity_id}
    created = requests.post(f"{stub.url}v3/conversations",
                            json={"isGroup": False, "bot": {"id": "28:bot"},
                                  "members": [{"id": "29:user"}], "tenantId": "t"},
                            headers=_headers(token), timeout=5)
    assert created.status_code == 200 and created.json()["id"]
    ops = [(r.operation, r.conversation_id, r.status) for r in stub.requests]
    assert ops == [("send_to_conversation", CONVERSATION, 200),
                   ("reply_to_activity", CONVERSATION, 200),
                   ("update_activity", CONVERSATION, 200),
                   ("create_conversation", None, 200)]
    assert [r.body["text"] for r in stub.activities()] == ["hello", "hello", "edited"]
    assert stub.activities("update_activity")[0].activity_id == activity_id


def test_a_service_url_with_a_path_is_served(stub: ConnectorStub) -> None:
    token = stub.issue_token()
    response = requests.post(f"{stub.url}emea/v3/conversations/c1/activities",
                             json=_activity(), headers=_headers(token), timeout=5)
    assert response.status_code == 200


@pytest.mark.parametrize("header", [None, "Bearer not-issued", "Basic abc"])
def test_calls_without_an_issued_token_are_refused(stub: ConnectorStub,
                                                   header: str | None) -> None:
    headers = {"Authorization": header} if header else {}
    response = requests.post(f"{stub.url}v3/conversations/c1/activities", json=_activity(),
                             headers=headers, timeout=5)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "Unauthorized"
    assert stub.requests[-1].status == 401


def test_expired_tokens_are_refused(stub: ConnectorStub) -> None:
    token = stub.issue_token()
    stub.expire_tokens()
    response = requests.post(f"{stub.url}v3/conversations/c1/activities", json=_activity(),
                             headers=_headers(token), timeout=5)
    assert response.status_code == 401


@pytest.mark.parametrize("body,where", [
    (_activity(type="shout"), "type"),
    (_activity(attachments={"contentType": "x"}), "attachments"),
    (_activity(attachments=[{"contentType": 5}]), "attachments/0/contentType"),
    (_activity(conversation="c1"), "conversation"),
    ([1, 2], "(body)"),
])
def test_bodies_off_the_swagger_are_refused_with_the_path(stub: ConnectorStub,
                                                          body: object, where: str) -> None:
    token = stub.issue_token()
    response = requests.post(f"{stub.url}v3/conversations/c1/activities", json=body,
                             headers=_headers(token), timeout=5)
    assert response.status_code == 400
    assert where in response.json()["error"]["message"]
    assert stub.requests[-1].errors and stub.activities() == []


def test_not_json_is_refused(stub: ConnectorStub) -> None:
    token = stub.issue_token()
    response = requests.post(f"{stub.url}v3/conversations/c1/activities", data=b"{nope",
                             headers={**_headers(token), "Content-Type": "application/json"},
                             timeout=5)
    assert response.status_code == 400
    assert "not JSON" in response.json()["error"]["message"]


def test_nullable_fields_follow_the_swagger() -> None:
    assert shape_errors("Activity", _activity(timestamp=None)) == []
    assert shape_errors("Activity", _activity(text=None)) != []


def test_fail_next_answers_429_then_5xx_then_recovers(stub: ConnectorStub) -> None:
    token = stub.issue_token()
    stub.fail_next(1, status=429, retry_after=2)
    stub.fail_next(1, status=503, retry_after=None)
    url = f"{stub.url}v3/conversations/c1/activities"
    first = requests.post(url, json=_activity(), headers=_headers(token), timeout=5)
    second = requests.post(url, json=_activity(), headers=_headers(token), timeout=5)
    third = requests.post(url, json=_activity(), headers=_headers(token), timeout=5)
    assert (first.status_code, first.headers.get("Retry-After")) == (429, "2")
    assert (second.status_code, second.headers.get("Retry-After")) == (503, None)
    assert third.status_code == 200
    assert [r.status for r in stub.requests] == [429, 503, 200]
    with pytest.raises(ValueError, match="neither 429 nor a 5xx"):
        stub.fail_next(1, status=404)


def test_unknown_paths_are_404_and_not_recorded(stub: ConnectorStub) -> None:
    response = requests.get(f"{stub.url}v3/whatever", timeout=5)
    assert response.status_code == 404
    assert stub.requests == []
