"""site.yml's monitoring plays in the converged default lab: Prometheus on the apps host scrapes
every node host's node exporter (the others' open to the apps host only) and every app's
/metrics (the exchange on loopback, the chain, stratum stats and Lightning APIs at the addresses
their hosts publish to the apps host) with keys only Prometheus can read. (WireGuard and
backups: test_lab_tunnel_backups_site.py.)"""

from __future__ import annotations

import json
import time

import pytest

from scnode_lab.pytest_plugin import ConvergedLab

pytestmark = [
    pytest.mark.testhosts,
    pytest.mark.xdist_group("default-lab"),
    pytest.mark.timeout(2700),
]

JOBS = {
    "prometheus",
    "node",
    "exchange",
    "chain_api_bitcoin",
    "chain_api_azcoin",
    "stratum_api_btc",
    "stratum_api_azc",
    "lightning_api",
}
KEYS_DIR = "/etc/prometheus/keys"


def _targets(lab: ConvergedLab) -> list[dict[str, object]]:
    status, body = lab.http("apps", "http://127.0.0.1:9090/api/v1/targets?state=active")
    assert status == 200, body
    assert isinstance(body, dict) and body["status"] == "success", body
    return list(body["data"]["activeTargets"])


def test_prometheus_scrapes_every_app_and_each_is_up(converged_lab: ConvergedLab) -> None:
    deadline = time.monotonic() + 150  # two scrape intervals (30 s) and Prometheus' start
    while True:
        targets = _targets(converged_lab)
        health = {str(t["labels"]["job"]): str(t["health"]) for t in targets}  # type: ignore[index]
        if set(health) == JOBS and set(health.values()) == {"up"}:
            break
        if time.monotonic() > deadline:
            errors = {str(t["scrapeUrl"]): t.get("lastError") for t in targets}
            pytest.fail(f"targets not all up: {health}\n{json.dumps(errors, indent=1)}")
        time.sleep(5)
    # the node exporter of every node host: the apps host's own and the others' on their address
    nodes = {str(t["labels"]["instance"]) for t in targets if t["labels"]["job"] == "node"}  # type: ignore[index]
    others = {f"{converged_lab.hosts[h].ip}:9100" for h in ("chain", "lightning", "mining")}
    assert nodes == {"127.0.0.1:9100"} | others, nodes
    # the apps' own series are there, not only `up`
    for query, job in [
        ("scnode_chain_blocks", "chain_api_bitcoin"),
        ("scnode_exchange_solvency_margin", "exchange"),
    ]:
        status, body = converged_lab.http(
            "apps", f"http://127.0.0.1:9090/api/v1/query?query={query}"
        )
        assert status == 200 and body["status"] == "success", body
        jobs = {r["metric"].get("job") for r in body["data"]["result"]}
        assert job in jobs, (query, body)


def test_node_exporters_answer_the_apps_host_only(converged_lab: ConvergedLab) -> None:
    mining = converged_lab.hosts["mining"].ip
    code, body = converged_lab.http("apps", f"http://{mining}:9100/metrics")
    assert code == 200 and "node_filesystem_avail_bytes" in body
    # from another node host the firewall drops the connection (curl gives up: code 000)
    assert converged_lab.http("chain", f"http://{mining}:9100/metrics", timeout=3)[0] == 0


def test_scrape_keys_are_readable_by_prometheus_only(converged_lab: ConvergedLab) -> None:
    lab = converged_lab
    assert lab.on("apps", f"stat -c '%a %U %G' {KEYS_DIR}").split() == ["750", "root", "prometheus"]
    rows = [
        line.split() for line in lab.on("apps", f"stat -c '%a %U %G %n' {KEYS_DIR}/*").splitlines()
    ]
    assert len(rows) == len(JOBS) - 2, rows  # every app job has its key
    assert all(r[:3] == ["640", "root", "prometheus"] for r in rows), rows
    probe = lab.ssh("apps", f"runuser -u nobody -- cat {KEYS_DIR}/exchange.token", check=False)
    assert probe.returncode != 0 and not probe.stdout
    # a key Prometheus sends is what the app accepts, and an app refuses a scrape without one
    assert lab.http("apps", "http://127.0.0.1:8410/metrics")[0] == 401
