"""The two hosts of the rotation tests, laid out as the scnode_apps role lays them out, and a
run of playbooks/rotate_api_keys.yml on them (local connection).

`chain1.test` has a chain API's first-run keys made by the apps' own tool (scnode_core.keytool,
as the role does); `apps1.test`'s exchange holds a copy of chain1's `exchange` key (as the role
copies it)."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from scnode_core import keytool

REPO = Path(__file__).resolve().parents[3]
BIN = REPO / ".venv" / "bin"
GRACE = 40


def rotate_task(grace: int) -> str:
    """The rotate task's name as the json callback reports it (it shows the grace period)."""
    return (
        f"API keys — rotate (a new key; the old one keeps working for its grace period, s) {grace}"
    )


ROTATE_TASK = rotate_task(GRACE)


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

    @property
    def prometheus_copy(self) -> Path:
        """Prometheus's copy of the read key (site.yml's monitoring play puts it there)."""
        return self.root / "apps1" / "prometheus-keys" / "chain-api-bitcoin.token"

    @property
    def dashboard_copy(self) -> Path:
        """Where the owner dashboard would hold the read key (not on this apps host)."""
        return self.apps_conf / "dashboard" / "client-keys" / "chain-api-bitcoin.key"


def make_hosts(layout: Layout) -> None:
    """First-run keys exactly as the scnode_apps role makes them (keytool create)."""
    layout.keys_file.parent.mkdir(parents=True)
    layout.tokens.mkdir(mode=0o700)
    for name, scopes in (("read", ["read"]), ("exchange", ["read", "deposit", "send"])):
        keytool.create(layout.keys_file, scopes, f"chain1-{name}", layout.token(name))
    layout.exchange_copy.parent.mkdir(parents=True)
    layout.exchange_copy.write_text(layout.token("exchange").read_text())
    layout.exchange_copy.chmod(0o640)
    layout.prometheus_copy.parent.mkdir(parents=True)
    layout.prometheus_copy.write_text(layout.token("read").read_text())
    layout.prometheus_copy.chmod(0o640)


def write_inventory(layout: Layout, api_port: int) -> Path:
    local = {
        "ansible_connection": "local",
        "ansible_python_interpreter": str(BIN / "python"),
        "api_key_rotation_monitoring_keys_dir": str(layout.prometheus_copy.parent),
    }
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


def rotate(
    inventory: Path, tmp_path: Path, *, check: bool = False, **variables: Any
) -> dict[str, Any]:
    """Run the playbook (with --check if `check`); return {host: {task name: result}}."""
    extra = {
        "api_key_rotation_become": False,
        "api_key_rotation_grace_period": GRACE,
        "api_key_rotation_exchange_group": "root",
        "api_key_rotation_monitoring_group": "root",
        "api_key_rotation_dashboard_group": "root",
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
            *(["--check"] if check else []),
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


@dataclass
class Traffic:
    """A client calling GET `path` in a loop with the key it reads from `key()`; each
    answer is kept with the wall-clock time its request was sent."""

    url: str
    key: Callable[[], str]
    path: str = "/v1/status"
    answers: list[tuple[float, int]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None

    def run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=10) as client:
            while not self.stop.is_set():
                sent = time.time()
                response = client.get(self.path, headers={"X-API-Key": self.key()})
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
