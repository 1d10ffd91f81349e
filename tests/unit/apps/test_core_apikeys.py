"""API keys: what a client and an operator notice — right key in, wrong key out, rotation."""

from __future__ import annotations

import json
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient

from scnode_core.apikeys import ApiKeyError, ApiKeyRecord, ApiKeyStore, Principal, generate
from scnode_core.auth import require_scope


def test_generated_key_authenticates_and_names_its_scopes() -> None:
    key = generate({"read", "deposit"}, name="exchange")
    store = ApiKeyStore([key.record])
    principal = store.authenticate(key.token)
    assert principal == Principal(key.key_id, "exchange", frozenset({"read", "deposit"}))
    assert key.token.startswith(f"scnk_{key.key_id}_")


def test_server_side_record_holds_no_secret() -> None:
    key = generate({"read"})
    secret = key.token.rsplit("_", 1)[1]
    assert secret not in json.dumps(key.record.to_json())


@pytest.mark.parametrize(
    "mangle",
    [
        lambda t: t[:-1] + ("A" if t[-1] != "A" else "B"),  # one character of the secret off
        lambda t: t.replace("scnk_", "scnx_"),  # wrong prefix
        lambda t: t + "x",  # too long
        lambda t: "",
        lambda t: "scnk_00000000_" + t.rsplit("_", 1)[1],  # right secret, other id
    ],
)
def test_tampered_tokens_are_refused(mangle: object) -> None:
    key = generate({"read"})
    store = ApiKeyStore([key.record])
    assert callable(mangle)
    assert store.authenticate(mangle(key.token)) is None


def test_rotation_grace_period_old_and_new_both_work_until_not_after() -> None:
    old = generate({"read"})
    new = generate({"read"})
    cutoff = datetime.now(UTC) + timedelta(hours=1)
    old_record = ApiKeyRecord(
        old.record.key_id, old.record.secret_sha256, old.record.scopes, not_after=cutoff
    )
    store = ApiKeyStore([old_record, new.record])
    assert store.authenticate(old.token) is not None
    assert store.authenticate(new.token) is not None
    later = cutoff + timedelta(seconds=1)
    assert store.authenticate(old.token, now=later) is None
    assert store.authenticate(new.token, now=later) is not None


def test_keys_file_round_trip_is_atomic_and_private(tmp_path: Path) -> None:
    key = generate({"read", "send"}, name="exchange")
    path = tmp_path / "api-keys.json"
    ApiKeyStore([key.record]).save(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert ApiKeyStore.load(path).authenticate(key.token) is not None
    assert [p.name for p in tmp_path.iterdir()] == ["api-keys.json"]


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("not json", "not valid JSON"),
        ('{"keys": 3}', "'keys' list"),
        ('{"keys": [{"id": "zz", "sha256": "00", "scopes": [], "created": "x"}]}', "malformed"),
    ],
)
def test_bad_keys_file_fails_with_a_reason(tmp_path: Path, content: str, reason: str) -> None:
    path = tmp_path / "keys.json"
    path.write_text(content)
    with pytest.raises(ApiKeyError, match=reason):
        ApiKeyStore.load(path)


def test_duplicate_ids_are_refused() -> None:
    key = generate({"read"})
    with pytest.raises(ApiKeyError, match="duplicate"):
        ApiKeyStore([key.record, key.record])


def _app(store: ApiKeyStore) -> FastAPI:
    app = FastAPI()
    # Default-argument style: string annotations could not see these locals.
    read = Depends(require_scope(lambda: store, "read"))
    send = Depends(require_scope(lambda: store, "send"))

    @app.get("/balance")
    def balance(who: Principal = read) -> dict[str, str]:
        return {"key": who.key_id}

    @app.post("/send")
    def send_route(who: Principal = send) -> dict[str, str]:
        return {"key": who.key_id}

    return app


def test_routes_answer_401_without_key_403_without_scope_200_with_it() -> None:
    reader = generate({"read"})
    store = ApiKeyStore([reader.record])
    client = TestClient(_app(store))
    missing = client.get("/balance")
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"].startswith("Bearer")
    assert client.get("/balance", headers={"Authorization": "Bearer nope"}).status_code == 401
    ok = client.get("/balance", headers={"Authorization": f"Bearer {reader.token}"})
    assert ok.status_code == 200
    assert ok.json() == {"key": reader.key_id}
    assert client.get("/balance", headers={"X-API-Key": reader.token}).status_code == 200
    denied = client.post("/send", headers={"Authorization": f"Bearer {reader.token}"})
    assert denied.status_code == 403
    assert "send" in denied.json()["detail"]
    assert reader.token not in denied.text
