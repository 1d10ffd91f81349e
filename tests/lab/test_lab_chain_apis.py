"""`make lab`'s chain host end to end: both chain nodes and both chain APIs (issue 5 "Done when").

Uses the default lab (`lab`, 10.10.0.0/24) like `make lab`: brings it up when it is not (and
then removes it again), converges `playbooks/site.yml` on the chain host twice — the second run
must change nothing — and then asks each chain API, as the printed commands do, for its sync
status and a deposit address with the chain's HRP.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from scnode_lab.lab import DEFAULT_NAME, Lab, lab_spec
from scnode_lab.pytest_plugin import missing_requirements

pytestmark = [
    pytest.mark.testhosts,
    # both converge the default lab (10.10.0.0/24): one xdist worker runs them one after the other
    pytest.mark.xdist_group("default-lab"),
    pytest.mark.slow,
    pytest.mark.timeout(1500),
    pytest.mark.skipif(missing_requirements() is not None, reason=str(missing_requirements())),
]

ROOT = Path(__file__).resolve().parents[2]
APIS = {"bitcoin": (8401, "bc1"), "azcoin": (8402, "az1")}
_RECAP = re.compile(r"^chain\.lab\s*:\s*ok=\d+\s+changed=(\d+)\s+unreachable=0\s+failed=0", re.M)


def _playbook(*extra: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1")
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"
    argv = [str(Path(sys.executable).parent / "ansible-playbook"), "playbooks/site.yml"]
    return subprocess.run(
        [*argv, "--limit", "chain.lab", *extra],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )


def _snapshot(dest: Path) -> Path:
    """The committed apps/ sources: other work in progress must not change the wheel mid-test."""
    dest.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", "HEAD", "apps"], capture_output=True, check=True
    )
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)
    return dest / "apps"


@pytest.fixture(scope="module")
def chain_lab() -> Iterator[Lab]:
    lab = Lab(DEFAULT_NAME)
    was_up = lab.load() is not None
    lab.up(lab_spec(DEFAULT_NAME, "10.10.0.0/24", None))
    yield lab
    if not was_up:
        lab.down()


@pytest.fixture(scope="module")
def apps_snapshot(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _snapshot(tmp_path_factory.mktemp("apps"))


@pytest.fixture(scope="module")
def converged(chain_lab: Lab, apps_snapshot: Path) -> Lab:
    changed: list[str] = []
    for run in (1, 2):
        result = _playbook("-e", f"scnode_apps_source_dir={apps_snapshot}")
        recap = _RECAP.search(result.stdout)
        assert result.returncode == 0 and recap, f"site.yml run {run}:\n{result.stdout[-4000:]}"
        changed.append(recap.group(1))
    assert changed[1] == "0", f"second site.yml run changed {changed[1]} tasks"
    return chain_lab


def _on_chain(lab: Lab, command: str) -> str:
    result = subprocess.run(
        lab.ssh("chain", command), capture_output=True, text=True, timeout=60, check=True
    )
    return result.stdout


def _curl(lab: Lab, port: int, path: str, key: str | None, method: str = "GET") -> tuple[int, str]:
    header = f"-H {shlex.quote('Authorization: Bearer ' + key)}" if key else ""
    out = _on_chain(
        lab, f"curl -s -X {method} {header} -w '\\n%{{http_code}}' http://127.0.0.1:{port}{path}"
    )
    body, _, code = out.rpartition("\n")
    return int(code), body


@pytest.mark.parametrize("chain", sorted(APIS))
def test_status_and_deposit_address_with_the_printed_keys(converged: Lab, chain: str) -> None:
    port, hrp = APIS[chain]
    tokens = f"/etc/scnode/keys/chain-api-{chain}"
    read = _on_chain(converged, f"cat {tokens}-read.token").strip()
    deposit = _on_chain(converged, f"cat {tokens}-deposit.token").strip()

    code, body = _curl(converged, port, "/v1/status", read)
    assert code == 200, body
    status = json.loads(body)
    assert status["chain"] == chain and status["network"] == "main"
    assert status["blocks"] == status["headers"] and status["initial_block_download"] is False
    assert "SIMULATION" in status["daemon_version"]

    code, body = _curl(converged, port, "/v1/members/alice/addresses", deposit, "POST")
    assert code == 201, body
    assert json.loads(body)["address"].startswith(hrp)

    # The read key may not hand out addresses; no key gets nothing.
    assert _curl(converged, port, "/v1/members/alice/addresses", read, "POST")[0] == 403
    assert _curl(converged, port, "/v1/status", None)[0] == 401


@pytest.mark.parametrize("chain", sorted(APIS))
def test_chain_api_runs_sandboxed_on_localhost_with_hashed_keys(converged: Lab, chain: str) -> None:
    unit = f"scnode-chain-api-{chain}.service"
    shown = _on_chain(
        converged,
        f"systemctl show {unit} -p ActiveState -p User -p ProtectSystem -p ReadWritePaths "
        "-p NoNewPrivileges",
    )
    props = dict(line.split("=", 1) for line in shown.splitlines() if "=" in line)
    assert props["ActiveState"] == "active"
    assert props["User"] == f"scnode-chain-api-{chain}"
    assert props["ProtectSystem"] == "strict" and props["NoNewPrivileges"] == "yes"
    assert props["ReadWritePaths"] == f"/var/lib/scnode/chain-api-{chain}"
    listening = _on_chain(converged, f"ss -Htln 'sport = :{APIS[chain][0]}'")
    assert listening.split()[3] == f"127.0.0.1:{APIS[chain][0]}", listening

    token = _on_chain(converged, f"cat /etc/scnode/keys/chain-api-{chain}-read.token").strip()
    keys = _on_chain(converged, f"cat /etc/scnode/chain-api-{chain}/api-keys.json")
    assert token.rsplit("_", 1)[1] not in keys
    modes = _on_chain(
        converged,
        f"stat -c '%a %U %G' /etc/scnode/keys/chain-api-{chain}-read.token "
        f"/etc/scnode/chain-api-{chain}/api-keys.json",
    ).split("\n")
    assert modes[0] == "600 root root"
    assert modes[1] == f"640 root scnode-chain-api-{chain}"


def test_release_virtualenv_is_versioned_and_current(converged: Lab) -> None:
    current = _on_chain(converged, "readlink /opt/scnode-apps/current").strip()
    assert re.fullmatch(r"/opt/scnode-apps/\d+\.\d+\.\d+\S*-[0-9a-f]{12}", current), current
    marker = _on_chain(converged, f"cat {current}/.scnode-release")
    wheel_hash = marker.split("sha256=")[1].strip()
    assert current.endswith(wheel_hash[:12])


def test_a_release_that_fails_its_health_check_is_rolled_back(
    converged: Lab, apps_snapshot: Path, tmp_path: Path
) -> None:
    good = _on_chain(converged, "readlink /opt/scnode-apps/current").strip()
    broken = _snapshot(tmp_path / "broken")
    main = broken / "scnode_chain_api" / "__main__.py"
    main.write_text(main.read_text().replace("def main(", "raise SystemExit(3)\n\n\ndef main(", 1))
    result = _playbook(
        "--tags",
        "chain_api",
        "-e",
        f"scnode_apps_source_dir={broken}",
        "-e",
        "scnode_apps_health_retries=5",
    )
    assert result.returncode != 0
    assert f"Rolled back: /opt/scnode-apps/current points at {good} again" in result.stdout
    assert _on_chain(converged, "readlink /opt/scnode-apps/current").strip() == good
    for port, _ in APIS.values():
        code, body = _curl(converged, port, "/healthz", None)
        assert code == 200, body
    failed = result.stdout.split("the failed release ")[1].split()[0]
    assert _on_chain(converged, f"test -d {failed} && echo kept").strip() == "kept"
    # The good release again: nothing to switch; the failed virtualenv and its wheel are removed.
    again = _playbook("-e", f"scnode_apps_source_dir={apps_snapshot}")
    assert again.returncode == 0, again.stdout[-4000:]
    assert _on_chain(converged, "readlink /opt/scnode-apps/current").strip() == good
    kept = set(_on_chain(converged, "ls -d /opt/scnode-apps/*-* /opt/scnode-apps/wheels/*").split())
    assert failed not in kept and f"/opt/scnode-apps/wheels/{failed.rsplit('/', 1)[1]}" not in kept
    assert good in kept
