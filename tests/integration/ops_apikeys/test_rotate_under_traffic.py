"""Rotating API keys with playbooks/rotate_api_keys.yml while clients keep calling a real chain
API process (in front of the simnet chain stand-in): no request fails during the rotation, the
old key works for the grace period and is refused after it, the next run removes it.

The inventory has two hosts on this machine (local connection): `chain1.test`, whose chain API
keys were made by the apps' own first-run tool (scnode_core.keytool, as the scnode_apps role
does), and `apps1.test`, whose exchange holds a copy of chain1's `exchange` key (as the
scnode_apps role copies it) — so discovery, the cross-host copy and the key file format the apps
read are all exercised."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from scnode_core import keytool
from simnet.pytest_chain import ChainNode
from tests.integration.chain_api.handle import ChainApi

REPO = Path(__file__).resolve().parents[3]
BIN = REPO / ".venv" / "bin"
GRACE = 30
pytestmark = pytest.mark.skipif(
    not (REPO / "collections" / "ansible_collections" / "satoshiware" / "scnode").exists(),
    reason="the collections/ link is missing: run `make collection-link`",
)


@dataclass
class Layout:
    """The files of the two hosts, as the scnode_apps role lays them out."""

    root: Path

    @property
    def chain_conf(self) -> Path:
        return self.root / "chain1" / "etc-scnode"

    @property
    def tokens(self) -> Path:
        return self.chain_conf / "keys"

    @property
    def keys_file(self) -> Path:
        return self.chain_conf / "chain-api-bitcoin" / "api-keys.json"

    def token(self, name: str) -> Path:
        return self.tokens / f"chain-api-bitcoin-{name}.token"

    @property
    def apps_conf(self) -> Path:
        return self.root / "apps1" / "etc-scnode"

    @property
    def exchange_copy(self) -> Path:
        return self.apps_conf / "exchange" / "client-keys" / "chain-api-bitcoin.key"


@dataclass
class Traffic:
    """A client calling GET /v1/status in a loop with the key it reads from `key()`; each
    answer is kept with the wall-clock time its request was sent."""

    url: str
    key: Callable[[], str]
    answers: list[tuple[float, int]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None

    def run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=10) as client:
            while not self.stop.is_set():
                sent = time.time()
                response = client.get("/v1/status", headers={"X-API-Key": self.key()})
                self.answers.append((sent, response.status_code))
                time.sleep(0.01)

    def start(self) -> Traffic:
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()
        return self

    def finish(self) -> None:
        self.stop.set()
        assert self.thread is not None
        self.thread.join(30)

    def statuses(self, since: float = 0.0, until: float = float("inf")) -> list[int]:
        return [status for sent, status in self.answers if since <= sent < until]


def make_hosts(layout: Layout) -> None:
    """First-run keys exactly as the scnode_apps role makes them (keytool create)."""
    layout.keys_file.parent.mkdir(parents=True)
    layout.tokens.mkdir(mode=0o700)
    for name, scopes in (("read", ["read"]), ("exchange", ["read", "deposit", "send"])):
        keytool.create(layout.keys_file, scopes, f"chain1-{name}", layout.token(name))
    layout.exchange_copy.parent.mkdir(parents=True)
    layout.exchange_copy.write_text(layout.token("exchange").read_text())
    layout.exchange_copy.chmod(0o640)


def write_inventory(layout: Layout, api_port: int) -> Path:
    local = {"ansible_connection": "local", "ansible_python_interpreter": str(BIN / "python")}
    inventory = {
        "all": {
            "vars": local,
            "children": {
                "scnode": {
                    "children": {
                        "chain": {
                            "hosts": {
                                "chain1.test": {
                                    "scnode_apps_conf_dir": str(layout.chain_conf),
                                    "scnode_apps_token_dir": str(layout.tokens),
                                    "scnode_apps_chain_apis": [
                                        {"chain": "bitcoin", "prefix": "btc", "port": api_port}
                                    ],
                                }
                            }
                        },
                        "apps": {
                            "hosts": {
                                "apps1.test": {
                                    "scnode_apps_conf_dir": str(layout.apps_conf),
                                    "scnode_apps_exchange_chains": {
                                        "bitcoin": {
                                            "asset": "SATS",
                                            "api_url": f"http://127.0.0.1:{api_port}",
                                            "key_host": "chain1.test",
                                        }
                                    },
                                }
                            }
                        },
                    }
                }
            },
        }
    }
    path = layout.root / "inventory.yml"
    path.write_text(yaml.safe_dump(inventory))
    return path


def rotate(inventory: Path, tmp_path: Path, **variables: Any) -> dict[str, Any]:
    """Run the playbook; return {host: {task name: result}} from the json callback."""
    extra = {
        "api_key_rotation_become": False,
        "api_key_rotation_grace_period": GRACE,
        "api_key_rotation_exchange_group": "root",
        # nothing to restart here: the test's clients read their key file on every request
        "api_key_rotation_restart": False,
        **variables,
    }
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
        "ANSIBLE_STDOUT_CALLBACK": "json",
        "ANSIBLE_LOCAL_TEMP": str(tmp_path / "ansible-tmp"),
        "PATH": f"{BIN}:{os.environ['PATH']}",
    }
    run = subprocess.run(
        [
            str(BIN / "ansible-playbook"),
            "-i",
            str(inventory),
            str(REPO / "playbooks" / "rotate_api_keys.yml"),
            "-e",
            json.dumps(extra),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=180,
        check=False,
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    report = json.loads(run.stdout)
    tasks: dict[str, Any] = {}
    for play in report["plays"]:
        for task in play["tasks"]:
            for host, result in task["hosts"].items():
                name = task["task"]["name"].rpartition(" : ")[2]  # without "<role> : "
                tasks.setdefault(host, {})[name] = result
    tasks["_stdout"] = run.stdout
    tasks["_durations"] = [
        (t["task"]["name"], t["task"]["duration"]) for p in report["plays"] for t in p["tasks"]
    ]
    return tasks


ROTATE_TASK = (
    f"API keys — rotate (a new key; the old one keeps working for its grace period, s) {GRACE}"
)


def test_rotation_under_traffic_fails_no_request(
    funded_node: ChainNode, start_chain_api: Callable[..., ChainApi], tmp_path: Path
) -> None:
    layout = Layout(tmp_path)
    make_hosts(layout)
    api = start_chain_api(funded_node, API_KEYS_FILE=str(layout.keys_file))
    inventory = write_inventory(layout, api.port)
    old_exchange_key = layout.exchange_copy.read_text().strip()
    old_read_key = layout.token("read").read_text().strip()

    exchange = Traffic(api.url, lambda: layout.exchange_copy.read_text().strip()).start()
    reader = Traffic(api.url, lambda: layout.token("read").read_text().strip()).start()
    # a client that never switches: it works through the grace period, then is refused
    laggard = Traffic(api.url, lambda: old_exchange_key).start()
    time.sleep(0.5)

    first = rotate(inventory, tmp_path)

    assert ROTATE_TASK in first["chain1.test"], list(first["chain1.test"])
    rotated = first["chain1.test"][ROTATE_TASK]["results"]
    changed = {r["item"]["item"]["name"]: r for r in rotated}
    # the deposit key was never made on this host (no token file): not rotated
    assert set(changed) == {"chain1-read", "chain1-exchange"}
    assert all(r["changed"] for r in changed.values())
    new_exchange_key = layout.exchange_copy.read_text().strip()
    assert new_exchange_key != old_exchange_key
    assert new_exchange_key == layout.token("exchange").read_text().strip()
    assert layout.token("read").read_text().strip() != old_read_key
    for secret in (old_exchange_key, new_exchange_key, old_read_key):
        assert secret not in first["_stdout"]

    # the laggard's key ends when the grace period ends, then it is refused
    ends = datetime.fromisoformat(changed["chain1-exchange"]["previous_not_after"]).timestamp()
    assert ends > time.time(), first["_durations"]
    time.sleep(ends - time.time() + 1.0)
    laggard.finish()
    assert set(laggard.statuses(until=ends - 0.2)) == {200}
    assert set(laggard.statuses(since=ends + 0.2)) == {401}
    with httpx.Client(base_url=api.url) as client:
        for key in (old_exchange_key, old_read_key):
            assert client.get("/v1/status", headers={"X-API-Key": key}).status_code == 401
        assert client.get("/v1/status", headers={"X-API-Key": new_exchange_key}).status_code == 200

    # the next run (keys younger than max_age: no new key) removes the dead ones from the file
    second = rotate(inventory, tmp_path, api_key_rotation_max_age=3600)
    again = {r["item"]["item"]["name"]: r for r in second["chain1.test"][ROTATE_TASK]["results"]}
    # (the first key's run on the shared keys file removes every dead key of the file)
    purged = sorted(i for r in again.values() for i in r["purged_key_ids"])
    assert purged == sorted(i for r in changed.values() for i in r["previous_key_ids"])
    assert not any(r["changed"] for r in second["chain1.test"][ROTATE_TASK]["results"][1:])
    assert again["chain1-exchange"]["key_id"] == changed["chain1-exchange"]["key_id"]
    assert layout.exchange_copy.read_text().strip() == new_exchange_key
    names = sorted(r["name"] for r in json.loads(layout.keys_file.read_text())["keys"])
    assert names == ["chain1-exchange", "chain1-read"]

    time.sleep(0.3)
    exchange.finish()
    reader.finish()
    # the clients that switch never saw a refusal, before, during or after the rotations
    for switching in (exchange, reader):
        assert set(switching.statuses()) == {200}
        assert len(switching.answers) > 50
    assert "Traceback" not in api.log()
