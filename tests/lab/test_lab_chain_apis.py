"""`make lab`'s chain host end to end: both chain nodes and both chain APIs (issue 5 "Done when").

Runs on the session's `converged_lab` (scnode_lab.pytest_plugin): the default lab converged with
`playbooks/site.yml` as `make lab` does, twice — the second run changed nothing on any host —
and then asks each chain API, as the printed commands do, for its sync status and a deposit
address with the chain's HRP. The rollback test deploys a broken release of the chain APIs and
then the session's good one again (`--tags chain_api`), leaving the lab as it found it.
"""

from __future__ import annotations

import json
import re
import shlex
import threading
from pathlib import Path

import pytest

from scnode_lab.playbook import snapshot_apps
from scnode_lab.pytest_plugin import ConvergedLab, missing_requirements

pytestmark = [
    pytest.mark.testhosts,
    # the default lab (10.10.0.0/24) is one per machine: one xdist worker runs its tests
    pytest.mark.xdist_group("default-lab"),
    pytest.mark.slow,
    pytest.mark.timeout(2700),  # the first test pays the converged_lab set-up
    pytest.mark.skipif(missing_requirements() is not None, reason=str(missing_requirements())),
]

APIS = {"bitcoin": (8401, "bc1"), "azcoin": (8402, "az1")}
# where the chain host publishes them to the apps host (inventories/lab/group_vars/chain.yml)
PUBLISHED = {"bitcoin": 8501, "azcoin": 8502}


def _on_chain(lab: ConvergedLab, command: str) -> str:
    return lab.on("chain", command, timeout=60)


def _curl(
    lab: ConvergedLab, port: int, path: str, key: str | None, method: str = "GET"
) -> tuple[int, str]:
    header = f"-H {shlex.quote('Authorization: Bearer ' + key)}" if key else ""
    out = _on_chain(
        lab, f"curl -s -X {method} {header} -w '\\n%{{http_code}}' http://127.0.0.1:{port}{path}"
    )
    body, _, code = out.rpartition("\n")
    return int(code), body


def test_second_converge_changed_nothing_on_any_host(converged_lab: ConvergedLab) -> None:
    second = converged_lab.second_converge
    assert set(second.recap) == {h.fqdn for h in converged_lab.hosts.values()}
    assert second.changed == dict.fromkeys(second.recap, 0), second.changed
    # its -vvv output is kept for the secrets scan of the assurance tests
    assert "PLAY RECAP" in converged_lab.second_converge_log.read_text()


def test_a_tags_run_over_the_whole_inventory_converges_only_its_play(
    converged_lab: ConvergedLab,
) -> None:
    """`--tags reverse_proxy` without `--limit`: every other play is skipped but its roles'
    checks (tagged `always`) still run on their hosts, and some read facts that the skipped
    plays would have gathered (the chain APIs' publish address, the CPU of the Lightning
    release). It failed on chain.lab until site.yml gathered the facts whatever the tags."""
    run = converged_lab.playbook("--tags", "reverse_proxy")
    assert run.returncode == 0, run.tail()
    assert set(run.recap) == {h.fqdn for h in converged_lab.hosts.values()}
    assert run.changed == dict.fromkeys(run.recap, 0), run.changed


@pytest.mark.parametrize("chain", sorted(APIS))
def test_status_and_deposit_address_with_the_printed_keys(
    converged_lab: ConvergedLab, chain: str
) -> None:
    port, hrp = APIS[chain]
    tokens = f"/etc/scnode/keys/chain-api-{chain}"
    read = _on_chain(converged_lab, f"cat {tokens}-read.token").strip()
    deposit = _on_chain(converged_lab, f"cat {tokens}-deposit.token").strip()

    code, body = _curl(converged_lab, port, "/v1/status", read)
    assert code == 200, body
    status = json.loads(body)
    assert status["chain"] == chain and status["network"] == "main"
    assert status["blocks"] == status["headers"] and status["initial_block_download"] is False
    assert "SIMULATION" in status["daemon_version"]

    code, body = _curl(converged_lab, port, "/v1/members/alice/addresses", deposit, "POST")
    assert code == 201, body
    assert json.loads(body)["address"].startswith(hrp)

    # The read key may not hand out addresses; no key gets nothing.
    assert _curl(converged_lab, port, "/v1/members/alice/addresses", read, "POST")[0] == 403
    assert _curl(converged_lab, port, "/v1/status", None)[0] == 401


@pytest.mark.parametrize("chain", sorted(APIS))
def test_chain_api_runs_sandboxed_on_localhost_with_hashed_keys(
    converged_lab: ConvergedLab, chain: str
) -> None:
    unit = f"scnode-chain-api-{chain}.service"
    shown = _on_chain(
        converged_lab,
        f"systemctl show {unit} -p ActiveState -p User -p ProtectSystem -p ReadWritePaths "
        "-p NoNewPrivileges",
    )
    props = dict(line.split("=", 1) for line in shown.splitlines() if "=" in line)
    assert props["ActiveState"] == "active"
    assert props["User"] == f"scnode-chain-api-{chain}"
    assert props["ProtectSystem"] == "strict" and props["NoNewPrivileges"] == "yes"
    assert props["ReadWritePaths"] == f"/var/lib/scnode/chain-api-{chain}"
    listening = _on_chain(converged_lab, f"ss -Htln 'sport = :{APIS[chain][0]}'")
    assert listening.split()[3] == f"127.0.0.1:{APIS[chain][0]}", listening

    token = _on_chain(converged_lab, f"cat /etc/scnode/keys/chain-api-{chain}-read.token").strip()
    keys = _on_chain(converged_lab, f"cat /etc/scnode/chain-api-{chain}/api-keys.json")
    assert token.rsplit("_", 1)[1] not in keys
    modes = _on_chain(
        converged_lab,
        f"stat -c '%a %U %G' /etc/scnode/keys/chain-api-{chain}-read.token "
        f"/etc/scnode/chain-api-{chain}/api-keys.json",
    ).split("\n")
    assert modes[0] == "600 root root"
    assert modes[1] == f"640 root scnode-chain-api-{chain}"


def test_release_virtualenv_is_versioned_and_current(converged_lab: ConvergedLab) -> None:
    current = _on_chain(converged_lab, "readlink /opt/scnode-apps/current").strip()
    assert re.fullmatch(r"/opt/scnode-apps/\d+\.\d+\.\d+\S*-[0-9a-f]{12}", current), current
    marker = _on_chain(converged_lab, f"cat {current}/.scnode-release")
    wheel_hash = marker.split("sha256=")[1].strip()
    assert current.endswith(wheel_hash[:12])


def test_a_release_that_fails_its_health_check_is_rolled_back(
    converged_lab: ConvergedLab, tmp_path: Path
) -> None:
    good = _on_chain(converged_lab, "readlink /opt/scnode-apps/current").strip()
    broken = snapshot_apps(tmp_path / "broken")
    main = broken / "scnode_chain_api" / "__main__.py"
    main.write_text(main.read_text().replace("def main(", "raise SystemExit(3)\n\n\ndef main(", 1))
    # The apps host keeps calling both chain APIs on their published sockets, as the exchange
    # does: every connection starts the failing unit again, so systemd's start limit is hit while
    # the broken release is current. The rollback must still bring the previous release up, on
    # loopback and on the published sockets (CI once saw the chain API stay down after it).
    chain_ip = converged_lab.hosts["chain"].ip
    urls = " ".join(f"http://{chain_ip}:{port}/healthz" for port in PUBLISHED.values())
    stop = "/run/scnode-test-traffic.stop"
    converged_lab.on("apps", f"rm -f {stop}")
    traffic = threading.Thread(
        target=converged_lab.on,
        args=(
            "apps",
            f"timeout 900 sh -c 'while [ ! -e {stop} ]; do for u in {urls}; do "
            f"curl -s -m 2 -o /dev/null $u; done; sleep 0.2; done'",
        ),
        kwargs={"timeout": 960},
        daemon=True,
    )
    traffic.start()
    try:
        result = converged_lab.playbook(
            "--limit",
            "chain.lab",
            "--tags",
            "chain_api",
            "-e",
            f"scnode_apps_source_dir={broken}",
            "-e",
            "scnode_apps_health_retries=5",
        )
    finally:
        converged_lab.on("apps", f"touch {stop}")
        traffic.join(30)
    assert result.returncode != 0
    assert f"Rolled back: /opt/scnode-apps/current points at {good} again" in result.stdout
    assert "The previous release answers its health checks." in result.stdout, result.tail()
    assert _on_chain(converged_lab, "readlink /opt/scnode-apps/current").strip() == good
    for port, _ in APIS.values():
        code, body = _curl(converged_lab, port, "/healthz", None)
        assert code == 200, body
    for chain, port in PUBLISHED.items():
        answer = converged_lab.ssh(
            "apps",
            f"curl -s -m 10 -o /dev/null -w '%{{http_code}}' http://{chain_ip}:{port}/healthz",
            check=False,
        ).stdout
        assert answer.strip() == "200", f"{chain} API not published again after the rollback"
    failed = result.stdout.split("the failed release ")[1].split()[0]
    assert _on_chain(converged_lab, f"test -d {failed} && echo kept").strip() == "kept"
    # The good release again: nothing to switch; the failed virtualenv and its wheel are removed.
    again = converged_lab.playbook("--limit", "chain.lab", "--tags", "chain_api")
    assert again.returncode == 0, again.tail()
    assert _on_chain(converged_lab, "readlink /opt/scnode-apps/current").strip() == good
    kept = set(
        _on_chain(converged_lab, "ls -d /opt/scnode-apps/*-* /opt/scnode-apps/wheels/*").split()
    )
    assert failed not in kept and f"/opt/scnode-apps/wheels/{failed.rsplit('/', 1)[1]}" not in kept
    assert good in kept
