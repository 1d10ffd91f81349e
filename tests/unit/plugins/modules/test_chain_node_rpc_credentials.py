"""The chain_node_rpc_credentials module: the RPC password is made once on the node, kept in the
client env file, read back, and the rpcauth line keeps its salt while the password is unchanged."""

from __future__ import annotations

import grp
import hashlib
import hmac
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn
from unittest import mock

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.satoshiware.scnode.plugins.modules import (  # type: ignore[import-untyped]
    chain_node_rpc_credentials as module,
)

GROUP = grp.getgrgid(os.getgid()).gr_name


class AnsibleExitJson(Exception):  # noqa: N818 - the name every collection's tests use
    """exit_json was called; the result is in args[0]."""


class AnsibleFailJson(Exception):  # noqa: N818
    """fail_json was called; the result is in args[0]."""


def _exit_json(self: Any, **result: Any) -> NoReturn:
    result.setdefault("changed", False)
    raise AnsibleExitJson(result)


def _fail_json(self: Any, msg: str, **result: Any) -> NoReturn:
    raise AnsibleFailJson({"msg": msg, "failed": True, **result})


@pytest.fixture(autouse=True)
def _module_exits() -> Iterator[None]:
    with (
        mock.patch.object(module.AnsibleModule, "exit_json", _exit_json),
        mock.patch.object(module.AnsibleModule, "fail_json", _fail_json),
    ):
        yield


@pytest.fixture(autouse=True)
def _as_root() -> Iterator[None]:
    """The module writes root-owned files; outside root, record the chown instead."""
    if os.geteuid() == 0:
        yield
    else:
        with mock.patch.object(module.os, "fchown"):
            yield


def run(tmp_path: Path, **extra: Any) -> dict[str, Any]:
    args = {
        "path": str(tmp_path / "chain-api.env"),
        "conf_path": str(tmp_path / "bitcoin.conf"),
        "group": GROUP,
        "rpc_user": "satoshi",
        "settings": {"rpc_url": "http://127.0.0.1:8332", "wallet": "wallet"},
        **extra,
    }
    with patch_module_args(args), pytest.raises(AnsibleExitJson) as finished:
        module.main()
    result: dict[str, Any] = finished.value.args[0]
    json.dumps(result)
    return result


def verifies(rpcauth: str, user: str, password: str) -> bool:
    name, _colon, rest = rpcauth.partition(":")
    salt, _dollar, digest = rest.partition("$")
    mac = hmac.new(salt.encode(), password.encode(), hashlib.sha256).hexdigest()
    return name == user and len(salt) == 32 and hmac.compare_digest(mac, digest)


def env_values(tmp_path: Path) -> dict[str, str]:
    lines = (tmp_path / "chain-api.env").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


def test_first_run_makes_a_password_and_a_matching_rpcauth(tmp_path: Path) -> None:
    result = run(tmp_path)
    assert result["changed"] and result["generated"]
    values = env_values(tmp_path)
    assert values["SCNODE_CHAIN_API_RPC_PASSWORD"] == result["password"]
    assert len(result["password"]) >= 40
    assert values["SCNODE_CHAIN_API_RPC_USER"] == "satoshi"
    assert values["SCNODE_CHAIN_API_RPC_URL"] == "http://127.0.0.1:8332"
    assert values["SCNODE_CHAIN_API_WALLET"] == "wallet"
    assert verifies(result["rpcauth"], "satoshi", result["password"])
    assert (tmp_path / "chain-api.env").stat().st_mode & 0o777 == 0o640


def test_later_runs_read_the_password_back_and_keep_the_salt(tmp_path: Path) -> None:
    first = run(tmp_path)
    (tmp_path / "bitcoin.conf").write_text(f"server=1\nrpcauth={first['rpcauth']}\n")
    second = run(tmp_path)
    assert not second["changed"] and not second["generated"]
    assert second["password"] == first["password"]
    assert second["rpcauth"] == first["rpcauth"]


def test_a_given_password_replaces_the_stored_one(tmp_path: Path) -> None:
    first = run(tmp_path)
    (tmp_path / "bitcoin.conf").write_text(f"rpcauth={first['rpcauth']}\n")
    result = run(tmp_path, password="from-the-vault-0123456789")
    assert result["changed"] and not result["generated"]
    assert env_values(tmp_path)["SCNODE_CHAIN_API_RPC_PASSWORD"] == "from-the-vault-0123456789"
    assert verifies(result["rpcauth"], "satoshi", "from-the-vault-0123456789")
    assert not verifies(result["rpcauth"], "satoshi", first["password"])


def test_check_mode_writes_nothing(tmp_path: Path) -> None:
    result = run(tmp_path, _ansible_check_mode=True)
    assert result["changed"]
    assert not (tmp_path / "chain-api.env").exists()


def test_loose_permissions_are_repaired(tmp_path: Path) -> None:
    run(tmp_path)
    (tmp_path / "chain-api.env").chmod(0o644)
    result = run(tmp_path)
    assert result["changed"]
    assert (tmp_path / "chain-api.env").stat().st_mode & 0o777 == 0o640


def test_a_changed_setting_rewrites_the_file_but_keeps_the_password(tmp_path: Path) -> None:
    first = run(tmp_path)
    result = run(tmp_path, settings={"rpc_url": "http://127.0.0.1:18332", "wallet": "wallet"})
    assert result["changed"]
    assert result["password"] == first["password"]
    assert env_values(tmp_path)["SCNODE_CHAIN_API_RPC_URL"] == "http://127.0.0.1:18332"
