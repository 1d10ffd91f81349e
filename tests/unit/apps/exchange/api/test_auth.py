"""Member session tokens and the two auth dependencies on a bare FastAPI app."""

from __future__ import annotations

import secrets

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from scnode_core.apikeys import ApiKeyStore, generate
from scnode_exchange.api.auth import (
    SESSION_COOKIE,
    MemberDep,
    OwnerDep,
    SessionTokens,
)

SECRET = secrets.token_bytes(32)


def test_token_round_trip_expiry_and_tampering() -> None:
    tokens = SessionTokens(SECRET, ttl_seconds=60)
    token = tokens.issue(7, now=1_000)
    principal = tokens.verify(token, now=1_059)
    assert principal is not None and principal.member_id == 7
    assert tokens.verify(token, now=1_060) is None  # expired
    forged = token.replace("scms1.7.", "scms1.8.")
    assert tokens.verify(forged, now=1_000) is None  # another member id breaks the signature
    assert SessionTokens(secrets.token_bytes(32)).verify(token, now=1_000) is None
    assert tokens.verify("garbage", now=1_000) is None
    with pytest.raises(ValueError, match="32 bytes"):
        SessionTokens(b"short")


@pytest.fixture
def client() -> TestClient:
    app = FastAPI()
    owner_key = generate({"owner"}, "tests")
    reader_key = generate({"read"}, "reader")
    store = ApiKeyStore([owner_key.record, reader_key.record])
    app.state.member_authenticator = SessionTokens(SECRET)
    app.state.owner_keys = lambda: store
    app.state.owner_token = owner_key.token
    app.state.reader_token = reader_key.token

    @app.get("/me")
    def me(member: MemberDep) -> dict[str, int]:
        return {"member_id": member.member_id}

    @app.post("/me")
    def change(member: MemberDep) -> dict[str, int]:
        return {"member_id": member.member_id}

    @app.get("/owner")
    def owner(who: OwnerDep) -> dict[str, str]:
        return {"actor": who.actor}

    return TestClient(app)


def test_member_dependency(client: TestClient) -> None:
    token = SessionTokens(SECRET).issue(3)
    assert client.get("/me").status_code == 401
    assert client.get("/me", headers={"Authorization": "Bearer nope"}).status_code == 401
    assert client.get("/me", headers={"Authorization": f"Bearer {token}"}).json() == {
        "member_id": 3
    }
    client.cookies.set(SESSION_COOKIE, token)
    assert client.get("/me").json() == {"member_id": 3}
    # a cookie alone cannot change anything (CSRF); with the header it can
    assert client.post("/me").status_code == 403
    assert client.post("/me", headers={"X-Requested-With": "fetch"}).status_code == 200


def test_owner_dependency(client: TestClient) -> None:
    state = client.app.state  # type: ignore[attr-defined]
    member_token = SessionTokens(SECRET).issue(3)
    assert client.get("/owner").status_code == 401
    assert client.get("/owner", headers={"X-API-Key": "scnk_00000000_x"}).status_code == 401
    assert (
        client.get("/owner", headers={"Authorization": f"Bearer {member_token}"}).status_code == 403
    )
    assert (
        client.get("/owner", headers={"Authorization": f"Bearer {state.reader_token}"}).status_code
        == 403
    )
    reply = client.get("/owner", headers={"X-API-Key": state.owner_token})
    assert reply.status_code == 200
    assert reply.json()["actor"].startswith("owner:") and reply.json()["actor"].endswith(":tests")
