"""playbooks/fleet_update.yml's orchestration on loopback: four inventory hosts on this machine
(local connection), each with its chain daemon (a simnet chain stand-in process) and an app's
/healthz (a small HTTP server), nothing to install (fleet_update_apps/backup off, no daemon
release) — so the pre-checks, health gates, batch verdicts, the stop over the failure limit,
the summary and the input validation run for real in seconds. The update and rollback of real
releases is tests/lab/test_lab_fleet_update.py on test hosts."""

from __future__ import annotations

import json
import os
import subprocess
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from simnet.ports import free_port
from simnet.pytest_chain import ChainNode

REPO = Path(__file__).resolve().parents[3]
BIN = REPO / ".venv" / "bin"

pytestmark = pytest.mark.skipif(
    not (REPO / "collections" / "ansible_collections" / "satoshiware" / "scnode").exists(),
    reason="the collections/ link is missing: run `make collection-link`",
)


class _Healthz(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/healthz" else 404)
        self.end_headers()
        self.wfile.write(b'{"status": "ok"}')

    def log_message(self, format: str, *args: Any) -> None:
        return


@pytest.fixture
def healthz() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Healthz)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/healthz"
    server.shutdown()
    server.server_close()


def chain(node: ChainNode) -> list[dict[str, str]]:
    return [
        {"chain": "bitcoin", "rpc_url": node.rpc_url, "cookie_file": str(node.netdir / ".cookie")}
    ]


@pytest.fixture
def fleet(
    start_chain_node: Callable[..., ChainNode], healthz: str, tmp_path: Path
) -> Callable[..., tuple[int, dict[str, Any]]]:
    synced = start_chain_node()
    synced.mine(1)  # a tip of now: out of initial block download
    behind = start_chain_node()  # genesis only: in initial block download
    closed = f"http://127.0.0.1:{free_port()}/healthz"
    hosts = {
        "n1.test": {"fleet_update_chains": chain(synced)},
        "n2.test": {"fleet_update_chains": chain(behind)},  # fails its pre-check
        "n3.test": {"fleet_update_chains": chain(synced)},
        "n4.test": {"fleet_update_chains": chain(synced), "fleet_update_gate_urls": [closed]},
    }
    inventory = {
        "all": {
            "vars": {
                "ansible_connection": "local",
                "ansible_python_interpreter": str(BIN / "python"),
                "fleet_update_become": False,
                "fleet_update_backup": False,
                "fleet_update_apps": False,
                "fleet_update_min_free_mb": 1,
                "fleet_update_gate_urls": [healthz],
                "fleet_update_gate_retries": 2,
                "fleet_update_gate_delay": 0,
                "scnode_apps_root": str(tmp_path / "apps"),
            },
            "children": {"scnode": {"hosts": hosts}},
        }
    }
    path = tmp_path / "inventory.yml"
    path.write_text(yaml.safe_dump(inventory))

    def run(**variables: Any) -> tuple[int, dict[str, Any]]:
        env = {
            **os.environ,
            "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
            "ANSIBLE_STDOUT_CALLBACK": "json",
            "ANSIBLE_LOCAL_TEMP": str(tmp_path / "ansible-tmp"),
            "PATH": f"{BIN}:{os.environ['PATH']}",
        }
        done = subprocess.run(
            [
                str(BIN / "ansible-playbook"),
                "-i",
                str(path),
                "playbooks/fleet_update.yml",
                "-e",
                json.dumps(variables),
            ],
            capture_output=True,
            text=True,
            env=env,
            cwd=REPO,
            timeout=300,
            check=False,
        )
        report = json.loads(done.stdout)
        messages: dict[str, list[Any]] = {}
        for play in report["plays"]:
            for task in play["tasks"]:
                for host, result in task["hosts"].items():
                    if "msg" in result:
                        messages.setdefault(task["task"]["name"], []).append((host, result["msg"]))
        return done.returncode, messages

    return run


def summary_of(messages: dict[str, Any]) -> list[str]:
    return list(messages["Fleet — summary"][-1][1])


def test_a_failed_node_in_a_batch_under_the_limit_does_not_stop_the_rollout(
    fleet: Callable[..., tuple[int, dict[str, Any]]],
) -> None:
    rc, messages = fleet(fleet_update_batch=[1, 2, 1], fleet_update_max_fail_percentage=50)

    assert rc == 2  # nodes not updated are failed hosts
    summary = summary_of(messages)
    assert (
        summary[0] == "fleet update: 2 updated, 0 rolled back, 1 failed, 1 skipped, 0 not reached"
    )
    lines = dict(line.split(": ", 1) for line in summary[1:])
    assert lines["n1.test"].startswith("UPDATED") and lines["n3.test"].startswith("UPDATED")
    assert lines["n2.test"].startswith("SKIPPED — pre-check failed: bitcoin: not synced")
    assert "initialblockdownload True" in lines["n2.test"]
    assert lines["n4.test"].startswith("FAILED — Fleet gate — the verdict: health gate failed")
    assert "ROLLBACK INCOMPLETE" in lines["n4.test"]  # its app still does not answer
    batches = [m for _, m in messages["Fleet — this batch"]]
    assert [b.split(":")[0] for b in batches] == ["batch of 1", "batch of 2", "batch of 1"]
    assert "1 failed (50.0 %, the limit is 50 %)" in batches[1]
    # the whole last batch failed: Ansible ends the play there, nothing was left to stop
    assert "STOPS" not in batches[1] and "the last batch failed" in batches[2]


def test_a_batch_over_the_limit_stops_the_rollout_before_the_next_batch(
    fleet: Callable[..., tuple[int, dict[str, Any]]],
) -> None:
    rc, messages = fleet(fleet_update_batch=[1, 2, 1], fleet_update_max_fail_percentage=40)

    assert rc == 2
    summary = summary_of(messages)
    assert summary[0] == (
        "fleet update STOPPED: 2 updated, 0 rolled back, 0 failed, 1 skipped, 1 not reached"
    )
    assert "n4.test: NOT_REACHED — the rollout stopped before its batch" in summary
    batches = [m for _, m in messages["Fleet — this batch"]]
    assert len(batches) == 2 and "THE ROLLOUT STOPS HERE" in batches[1]
    # n4 was never pre-checked nor gated
    assert not any(h == "n4.test" for h, _ in messages.get("Fleet gate — the verdict", []))


def test_bad_inputs_stop_the_run_before_any_node_is_touched(
    fleet: Callable[..., tuple[int, dict[str, Any]]],
) -> None:
    rc, messages = fleet(
        fleet_update_batch=["a quarter"], fleet_update_daemons={"litecoin": {"version": "1"}}
    )

    assert rc == 2
    failures = [m for name, ms in messages.items() for _, m in ms if "fleet_update_batch" in str(m)]
    assert failures and '[1, "25%"]' in failures[0]
    assert "Fleet — this batch" not in messages and "Fleet — summary" not in messages
