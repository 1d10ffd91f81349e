"""The api_key module on real files in a temporary directory: keys file (hashes only) on the
server side, token file or env file on the client side; the clock is moved by patching
``_apikeys.utcnow``."""

from __future__ import annotations

import hashlib
import json
import stat
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NoReturn
from unittest import mock

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.satoshiware.scnode.plugins.module_utils import (  # type: ignore[import-untyped]
    _apikeys,
)
from ansible_collections.satoshiware.scnode.plugins.modules import (  # type: ignore[import-untyped]
    api_key,
    api_key_info,
)

T0 = datetime(2026, 11, 26, 5, 0, 0, tzinfo=UTC)


class AnsibleExitJson(Exception):  # noqa: N818 - the name every collection's tests use
    """exit_json was called; the result is in args[0]."""


class AnsibleFailJson(Exception):  # noqa: N818
    """fail_json was called; the result is in args[0]."""


def _exit_json(self: Any, **result: Any) -> NoReturn:
    result.setdefault("changed", False)
    raise AnsibleExitJson(result)


def _fail_json(self: Any, msg: str, **result: Any) -> NoReturn:
    result["msg"] = msg
    result["failed"] = True
    raise AnsibleFailJson(result)


@pytest.fixture(autouse=True)
def _module_exits() -> Iterator[None]:
    with (
        mock.patch.object(api_key.AnsibleModule, "exit_json", _exit_json),
        mock.patch.object(api_key.AnsibleModule, "fail_json", _fail_json),
    ):
        yield  # (api_key_info uses the same AnsibleModule class)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> Iterator[Clock]:
    c = Clock()
    with mock.patch.object(_apikeys, "utcnow", lambda: c.now):
        yield c


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    return {"keys": tmp_path / "api-keys.json", "token": tmp_path / "client.token"}


def run(
    args: dict[str, Any],
    *,
    check: bool = False,
    diff: bool = False,
    no_log: bool = False,
    module: Any = api_key,
) -> dict[str, Any]:
    module_args = dict(args)
    module_args.update(_ansible_check_mode=check, _ansible_diff=diff, _ansible_no_log=no_log)
    with patch_module_args(module_args), pytest.raises((AnsibleExitJson, AnsibleFailJson)) as end:
        module.main()
    result: dict[str, Any] = end.value.args[0]
    json.dumps(result)
    return result


def records(path: Path) -> list[dict[str, Any]]:
    data: list[dict[str, Any]] = json.loads(path.read_text())["keys"]
    return data


def authenticates(token: str, path: Path, now: datetime) -> str | None:
    """The apps' check, written out independently: id + sha256(secret) + not_after."""
    prefix, key_id, secret = token.split("_", 2)
    assert prefix == "scnk" and len(secret) == 43
    for record in records(path):
        if record["id"] == key_id:
            ok = record["sha256"] == hashlib.sha256(secret.encode()).hexdigest()
            ends = record["not_after"]
            if ok and (ends is None or now < datetime.fromisoformat(ends)):
                return key_id
    return None


def base(files: dict[str, Path], **more: Any) -> dict[str, Any]:
    return {
        "keys_file": str(files["keys"]),
        "name": "exchange-deposit",
        "token_file": str(files["token"]),
        **more,
    }


def test_present_creates_the_key_on_both_sides_and_never_returns_it(
    files: dict[str, Path], clock: Clock
) -> None:
    result = run(base(files, scopes=["read", "deposit"]))
    assert result["changed"] is True and result["client_updated"] is True
    token = files["token"].read_text().strip()
    assert token not in json.dumps(result) and "token" not in result
    assert authenticates(token, files["keys"], clock.now) == result["key_id"]
    (record,) = records(files["keys"])
    assert record["scopes"] == ["deposit", "read"] and record["name"] == "exchange-deposit"
    assert token.split("_", 2)[2] not in files["keys"].read_text()  # the server keeps a hash only
    assert stat.S_IMODE(files["keys"].stat().st_mode) == 0o640
    assert stat.S_IMODE(files["token"].stat().st_mode) == 0o600
    assert "sha256" not in json.dumps(result["keys"])

    again = run(base(files, scopes=["read", "deposit"]))
    assert again["changed"] is False and again["key_id"] == result["key_id"]
    assert files["token"].read_text().strip() == token


def test_rotation_keeps_the_old_key_for_the_grace_period_then_purges_it(
    files: dict[str, Path], clock: Clock
) -> None:
    first = run(base(files, scopes=["read"]))
    old_token = files["token"].read_text().strip()
    clock.advance(3600)

    rotated = run(base(files, state="rotated", grace_period=600))
    new_token = files["token"].read_text().strip()
    assert rotated["changed"] is True and rotated["key_id"] != first["key_id"]
    assert rotated["previous_key_ids"] == [first["key_id"]]
    assert rotated["previous_not_after"] == (clock.now + timedelta(seconds=600)).isoformat()
    assert rotated["reason"] == "the key is 3600 s old (max_age 0 s)"
    # both work during the grace period; the new one keeps the scopes
    assert authenticates(old_token, files["keys"], clock.now) == first["key_id"]
    assert authenticates(new_token, files["keys"], clock.now) == rotated["key_id"]
    assert [r["scopes"] for r in records(files["keys"])] == [["read"], ["read"]]

    clock.advance(601)
    assert authenticates(old_token, files["keys"], clock.now) is None
    purge = run(base(files))
    assert purge["changed"] is True and purge["purged_key_ids"] == [first["key_id"]]
    assert [r["id"] for r in records(files["keys"])] == [rotated["key_id"]]


def test_max_age_makes_a_scheduled_rotation_idempotent(
    files: dict[str, Path], clock: Clock
) -> None:
    first = run(base(files, scopes=["read"]))
    clock.advance(86399)
    assert run(base(files, state="rotated", max_age=86400))["changed"] is False
    clock.advance(1)
    later = run(base(files, state="rotated", max_age=86400))
    assert later["changed"] is True and later["key_id"] != first["key_id"]


def test_a_client_holding_no_valid_key_gets_a_new_one(files: dict[str, Path], clock: Clock) -> None:
    first = run(base(files, scopes=["read"]))
    files["token"].write_text("scnk_00000000_" + "A" * 43 + "\n")  # lost or foreign
    healed = run(base(files))
    assert (
        healed["changed"] is True
        and healed["reason"] == "the client holds no valid key of this name"
    )
    assert healed["previous_key_ids"] == [first["key_id"]]
    assert authenticates(files["token"].read_text().strip(), files["keys"], clock.now)


def test_check_mode_writes_nothing(files: dict[str, Path], clock: Clock) -> None:
    result = run(base(files, scopes=["read"]), check=True)
    assert result["changed"] is True
    assert not files["keys"].exists() and not files["token"].exists()
    run(base(files, scopes=["read"]))
    before = (files["keys"].read_text(), files["token"].read_text())
    assert run(base(files, state="rotated"), check=True)["changed"] is True
    assert (files["keys"].read_text(), files["token"].read_text()) == before


def test_diff_shows_ids_and_dates_never_hashes(files: dict[str, Path], clock: Clock) -> None:
    first = run(base(files, scopes=["read"]))
    rotated = run(base(files, state="rotated", grace_period=60), diff=True)
    diff = rotated["diff"]
    assert diff["before"] == f"{first['key_id']} exchange-deposit [read] created {T0.isoformat()}\n"
    assert f"not_after {(T0 + timedelta(seconds=60)).isoformat()}" in diff["after"]
    assert rotated["key_id"] in diff["after"]
    assert records(files["keys"])[0]["sha256"] not in json.dumps(diff)


def test_scopes_change_in_place(files: dict[str, Path], clock: Clock) -> None:
    first = run(base(files, scopes=["read"]))
    changed = run(base(files, scopes=["read", "send"]))
    assert changed["changed"] is True and changed["key_id"] == first["key_id"]
    assert records(files["keys"])[0]["scopes"] == ["read", "send"]


def test_absent_revokes_at_once_by_id_or_by_name(files: dict[str, Path], clock: Clock) -> None:
    one = run(base(files, scopes=["read"]))
    other = run(
        base(files, name="monitoring", token_file=str(files["token"]) + "2", scopes=["read"])
    )
    gone = run({"keys_file": str(files["keys"]), "state": "absent", "key_id": one["key_id"]})
    assert gone["changed"] is True and gone["revoked_key_ids"] == [one["key_id"]]
    assert [r["id"] for r in records(files["keys"])] == [other["key_id"]]
    again = run({"keys_file": str(files["keys"]), "state": "absent", "key_id": one["key_id"]})
    assert again["changed"] is False
    by_name = run({"keys_file": str(files["keys"]), "state": "absent", "name": "monitoring"})
    assert by_name["revoked_key_ids"] == [other["key_id"]] and records(files["keys"]) == []


def test_info_lists_ids_ages_and_the_clients_key(files: dict[str, Path], clock: Clock) -> None:
    made = run(base(files, scopes=["read"]))
    clock.advance(90)
    listed = run(base(files), module=api_key_info)
    assert listed["changed"] is False and listed["client_key_id"] == made["key_id"]
    (key,) = listed["keys"]
    assert key == {
        "id": made["key_id"],
        "name": "exchange-deposit",
        "scopes": ["read"],
        "created": T0.isoformat(),
        "age_seconds": 90,
        "not_after": None,
        "valid": True,
    }
    missing = run({"keys_file": str(files["keys"]) + ".nope"}, module=api_key_info)
    assert missing["failed"] and "does not exist" in missing["msg"]


def test_env_file_client_keeps_the_other_lines_and_its_mode(
    files: dict[str, Path], clock: Clock, tmp_path: Path
) -> None:
    env = tmp_path / "settings.env"
    env.write_text("# exchange\nSCNODE_EXCHANGE_LAB_MODE=false\nSCNODE_EXCHANGE_API_KEY=old\n")
    env.chmod(0o640)
    args = {
        "keys_file": str(files["keys"]),
        "name": "exchange",
        "scopes": ["read"],
        "env_file": str(env),
        "env_var": "SCNODE_EXCHANGE_API_KEY",
    }
    made = run(args)
    lines = env.read_text().splitlines()
    assert lines[:2] == ["# exchange", "SCNODE_EXCHANGE_LAB_MODE=false"]
    token = lines[2].partition("=")[2]
    assert authenticates(token, files["keys"], clock.now) == made["key_id"]
    assert stat.S_IMODE(env.stat().st_mode) == 0o640
    assert run(args)["changed"] is False


def test_env_file_json_value_gets_the_key_at_its_path(
    files: dict[str, Path], clock: Clock, tmp_path: Path
) -> None:
    env = tmp_path / "exchange.env"
    chains = {"btc": {"asset": "SATS", "api_url": "http://127.0.0.1:8401", "api_key": "x"}}
    env.write_text(f"SCNODE_EXCHANGE_CHAINS='{json.dumps(chains)}'\n")
    args = {
        "keys_file": str(files["keys"]),
        "name": "exchange-btc",
        "scopes": ["read", "deposit", "send"],
        "env_file": str(env),
        "env_var": "SCNODE_EXCHANGE_CHAINS",
        "env_json_path": ["btc", "api_key"],
    }
    made = run(args)
    raw = env.read_text().strip().partition("=")[2]
    assert raw.startswith("'") and raw.endswith("'")
    value = json.loads(raw[1:-1])
    assert value["btc"]["api_url"] == "http://127.0.0.1:8401"
    assert authenticates(value["btc"]["api_key"], files["keys"], clock.now) == made["key_id"]
    assert run(args)["changed"] is False


def test_return_secret_only_under_no_log(files: dict[str, Path], clock: Clock) -> None:
    args = {"keys_file": str(files["keys"]), "name": "ops", "scopes": ["owner"]}
    refused = run({**args, "return_secret": True})
    assert refused["failed"] and "no_log" in refused["msg"]
    lost = run(args)
    assert lost["failed"] and "token would be lost" in lost["msg"]
    assert not files["keys"].exists()
    given = run({**args, "return_secret": True}, no_log=True)
    assert authenticates(given["token"], files["keys"], clock.now) == given["key_id"]


def test_a_broken_keys_file_is_refused_without_writing(
    files: dict[str, Path], clock: Clock
) -> None:
    files["keys"].write_text('{"keys": [{"id": "nothex!!", "sha256": "00"}]}')
    result = run(base(files, scopes=["read"]))
    assert result["failed"] and "malformed key record" in result["msg"]
    assert not files["token"].exists()


def test_each_write_changes_the_mtime_the_apps_watch(tmp_path: Path) -> None:
    path = tmp_path / "f"
    seen = set()
    for n in range(20):  # faster than the kernel's coarse file clock ticks
        _apikeys.atomic_write(str(path), str(n), 0o600)
        seen.add(path.stat().st_mtime_ns)
    assert len(seen) == 20
