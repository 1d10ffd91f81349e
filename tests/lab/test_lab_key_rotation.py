"""playbooks/rotate_api_keys.yml on the converged default lab, with traffic running (issue 9).

Every API key of the node's apps rotates: the chain APIs' and stratum stats APIs' keys (read,
deposit, exchange), the Lightning API's, the exchange owner's. While it runs, a member keeps
calling the exchange, and a client reading the exchange's copy of its chain API key at every
call (as the exchange does) keeps calling the chain API; the superseded keys keep working for a
short grace period (90 s here, a day by default), then the traffic runs on past its end.

What a node owner would notice: no request failed, the exchange was never restarted, nothing
printed a key, the old keys are refused once the grace period is over, every client's copy
(the exchange's, Prometheus's, the owner dashboard's) holds the new key, Prometheus scrapes
every app with it, and a deposit paid after the grace period is credited (the exchange's chain
API client uses the new key).
"""

from __future__ import annotations

import re
import shlex
import time
from datetime import datetime

import pytest

from scnode_lab.demo import Demo
from scnode_lab.pytest_plugin import ConvergedLab
from scnode_lab.remote import wait_for

pytestmark = [
    pytest.mark.testhosts,
    pytest.mark.xdist_group("default-lab"),
    pytest.mark.timeout(2700),
]

GRACE = 90
EXCHANGE = "http://127.0.0.1:8410"
TRAFFIC_LOG = "/run/scnode-rotation-traffic.log"
TRAFFIC_STOP = "/run/scnode-rotation-traffic.stop"
# The dashboard's own exchange keys (/etc/scnode/keys/<name>.token on the apps host, copied to
# the dashboard's key files)
OWN_KEYS = ["exchange-dashboard", "exchange-dashboard-owner"]
# The read keys the apps host holds copies of: (token host, token name, copy name)
READ_KEYS = [
    ("chain", "chain-api-bitcoin-read", "chain-api-bitcoin"),
    ("chain", "chain-api-azcoin-read", "chain-api-azcoin"),
    ("mining", "stratum-api-btc-read", "stratum-api-btc"),
    ("mining", "stratum-api-azc-read", "stratum-api-azc"),
    ("lightning", "lightning-api-read", "lightning-api"),
]


def _start_traffic(lab: ConvergedLab, member_token: str) -> None:
    chain_api = f"http://{lab.hosts['chain'].ip}:8501/v1/status"
    key_copy = "/etc/scnode/exchange/client-keys/chain-api-bitcoin.key"
    loop = (
        f"rm -f {TRAFFIC_STOP} {TRAFFIC_LOG}; "
        f"while [ ! -e {TRAFFIC_STOP} ]; do "
        f"for path in '/v1/deposits/address?chain=bitcoin' '/v1/mining/payouts'; do "
        f"curl -s -o /dev/null -m 10 -w '%{{http_code}} exchange\\n' "
        f'-H "Authorization: Bearer $MEMBER" "{EXCHANGE}$path" >> {TRAFFIC_LOG}; done; '
        f"curl -s -o /dev/null -m 10 -w '%{{http_code}} chain-api\\n' "
        f'-H "Authorization: Bearer $(cat {key_copy})" {chain_api} >> {TRAFFIC_LOG}; '
        "sleep 0.2; done"
    )
    lab.on(
        "apps",
        f"MEMBER={shlex.quote(member_token)} setsid nohup bash -c {shlex.quote(loop)} "
        ">/dev/null 2>&1 < /dev/null &",
    )


def _exchange_pid(lab: ConvergedLab) -> str:
    return lab.on("apps", "systemctl show -P MainPID scnode-exchange.service").strip()


def _scraped_since(lab: ConvergedLab, since: float) -> dict[str, str] | None:
    status, body = lab.http("apps", "http://127.0.0.1:9090/api/v1/targets?state=active")
    assert status == 200, body
    seen: dict[str, str] = {}
    for target in body["data"]["activeTargets"]:
        stamp = re.sub(r"\.\d+", "", str(target["lastScrape"])).replace("Z", "+00:00")
        if datetime.fromisoformat(stamp).timestamp() < since:
            return None
        seen[str(target["labels"]["job"])] = str(target["health"])
    return seen


def test_rotating_every_key_under_traffic_fails_no_request(converged_lab: ConvergedLab) -> None:
    lab = converged_lab
    demo = Demo(lab.lab)
    alice = demo.facts.members["alice"]
    old = {name: lab.token(host, name) for host, name, _ in READ_KEYS}
    old["chain-api-bitcoin-exchange"] = lab.token("chain", "chain-api-bitcoin-exchange")
    for own in OWN_KEYS:  # the dashboard's exchange keys
        old[own] = lab.token("apps", own)
    pid = _exchange_pid(lab)

    _start_traffic(lab, demo.member_token(alice))
    try:
        time.sleep(3)
        run = lab.playbook(
            "-e", f"api_key_rotation_grace_period={GRACE}", playbook="playbooks/rotate_api_keys.yml"
        )
        rotated_at = time.time()
        assert run.ok, run.tail()
        # grace periods started while the play ran: all over GRACE s after it ended, then
        # one more Prometheus scrape interval (30 s) on the new keys only
        grace_over = rotated_at + GRACE
        time.sleep(max(0.0, grace_over - time.time()) + 5)
        scraped = wait_for(
            "every Prometheus target scraped after the grace period",
            lambda: _scraped_since(lab, grace_over),
            timeout=120,
        )
    finally:
        lab.on("apps", f"touch {TRAFFIC_STOP}; sleep 1")
    answers = lab.on("apps", f"cat {TRAFFIC_LOG}").splitlines()

    # no request failed, before, during or after the rotation and its grace period
    by_client: dict[str, list[str]] = {}
    for line in answers:
        status, client = line.split()
        by_client.setdefault(client, []).append(status)
    assert set(by_client) == {"exchange", "chain-api"}, answers[:5]
    for client, codes in by_client.items():
        assert set(codes) == {"200"}, (client, sorted(set(codes)))
        assert len(codes) > 100, (client, len(codes))
    assert _exchange_pid(lab) == pid  # the exchange re-read its keys: no restart

    new = {name: lab.token(host, name) for host, name, _ in READ_KEYS}
    new["chain-api-bitcoin-exchange"] = lab.token("chain", "chain-api-bitcoin-exchange")
    for own in OWN_KEYS:
        new[own] = lab.token("apps", own)
        copy = lab.on("apps", f"cat /etc/scnode/dashboard/client-keys/{own}.token").strip()
        assert copy == new[own], own
    for name in old:
        assert new[name] != old[name], name
    for secret in (*old.values(), *new.values()):
        assert secret not in run.stdout + run.stderr
    # the superseded keys are refused now; the new ones work
    chain_status = f"http://{lab.hosts['chain'].ip}:8501/v1/status"
    assert lab.http("apps", chain_status, old["chain-api-bitcoin-exchange"])[0] == 401
    assert lab.http("apps", chain_status, old["chain-api-bitcoin-read"])[0] == 401
    assert lab.http("apps", chain_status, new["chain-api-bitcoin-read"])[0] == 200

    # every client's copy holds the new key: the exchange's, Prometheus's, the dashboard's
    copies = lab.on("apps", "cat /etc/scnode/exchange/client-keys/chain-api-bitcoin.key").strip()
    assert copies == new["chain-api-bitcoin-exchange"]
    for _, name, copy in READ_KEYS:
        assert lab.on("apps", f"cat /etc/prometheus/keys/{copy}.token").strip() == new[name]
        dashboard = lab.on("apps", f"cat /etc/scnode/dashboard/client-keys/{copy}.key").strip()
        assert dashboard == new[name], copy
    assert set(scraped.values()) == {"up"}, scraped

    # a deposit paid after the grace period is credited (the exchange's chain client)
    def sats() -> int:
        code, shown = demo.owner("GET", f"/api/owner/members/{alice}")
        assert code == 200, shown
        return int({b["asset"]: b["balance"] for b in shown["balances"]}.get("SATS", 0))

    before = sats()
    code, address = lab.http(
        "apps", f"{EXCHANGE}/v1/deposits/address?chain=bitcoin", demo.member_token(alice)
    )
    assert code == 200, address
    demo.chain_control("bitcoin", "pay", {"address": address["address"], "sats": 12_345})
    demo.chain_control("bitcoin", "mine", {"blocks": address["required_confirmations"]})
    wait_for("the deposit credited", lambda: sats() == before + 12_345, timeout=180)
    demo.fetch_credentials()  # the lab's printed credentials follow the rotation
    print(
        f"rotation: {run.seconds:.0f} s; requests answered 200: "
        + ", ".join(f"{c} {len(v)}" for c, v in sorted(by_client.items()))
    )
