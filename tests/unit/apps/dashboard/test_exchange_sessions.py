"""The exchange's ``POST /api/dashboard/sessions``: only a ``dashboard`` key gets a member
token, the token acts for that member only, and the key opens no owner route."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from scnode_core.apikeys import ApiKeyStore, generate
from scnode_exchange.api.app import create_app
from tests.unit.apps.exchange.api.node import make_settings


def test_dashboard_key_issues_member_tokens_and_nothing_else(tmp_path: Path) -> None:
    settings, owner_key = make_settings(tmp_path, f"sqlite:///{tmp_path / 'ex.sqlite3'}")
    dashboard = generate({"dashboard"}, "dashboard")
    store = ApiKeyStore.load(settings.owner_api_keys_file)
    ApiKeyStore([*store.records, dashboard.record]).save(settings.owner_api_keys_file)
    with TestClient(create_app(settings)) as client:
        owner = {"X-API-Key": owner_key}
        dash = {"X-API-Key": dashboard.token}
        ids = {}
        for handle in ("alice", "bob"):
            reply = client.post(
                "/api/owner/members",
                json={"handle": handle, "reason": "test member"},
                headers=owner,
            )
            assert reply.status_code == 201, reply.text
            ids[handle] = reply.json()["id"]

        reply = client.post("/api/dashboard/sessions", json={"handle": "alice"}, headers=dash)
        assert reply.status_code == 201, reply.text
        body = reply.json()
        assert (body["member_id"], body["frozen"]) == (ids["alice"], False)
        me = client.get("/api/auth/me", headers={"Authorization": f"Bearer {body['token']}"})
        assert me.json()["username"] == "alice"

        missing = client.post("/api/dashboard/sessions", json={"handle": "carol"}, headers=dash)
        assert missing.status_code == 404
        # the owner's key is not a dashboard key, and no key is no key
        by_owner = client.post("/api/dashboard/sessions", json={"handle": "bob"}, headers=owner)
        assert by_owner.status_code == 403
        anonymous = client.post("/api/dashboard/sessions", json={"handle": "bob"})
        assert anonymous.status_code == 401
        # the dashboard key opens no owner route
        assert client.get("/api/owner/members", headers=dash).status_code == 403
