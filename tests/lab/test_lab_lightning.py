"""`make lab`'s Lightning (issue 8): Core Lightning on lightning.lab with its one channel to the
simulated SC Cluster's hub on cluster.lab, the Lightning API next to it, and LaaS deposits in the
exchange on apps.lab — on the converged default lab (`converged_lab`: site.yml twice, the second
changing nothing, and the demo seeding).

- The channel with the hub is CHANNELD_NORMAL on both sides (`listpeerchannels`), and it is the
  only one (a re-converge never opens a second).
- The Lightning API answers `/healthz` publicly and `/v1/status` with its read key: synced,
  the hub connected, the channel normal with the balances lightningd reports.
- A new member asks the exchange for a deposit invoice (`POST /v1/lightning/invoices`, the same
  idempotency key again gives the same invoice); the simulated outside world pays it through the
  hub; the member's SATS balance is credited exactly the invoice's amount (amount_sats * 1000
  msat received → amount_sats credited), once: it stays so, and the invoice is `credited`. The
  node's channel balance grew by exactly that many msat and the Lightning API journalled the
  payment (`invoice_paid`) after cl-zmq woke it (its `invoice_payment` message counter grew).
- A member pays an invoice of the hub's (`POST /v1/lightning/payments`): the exchange holds the
  amount + the fee reserve, its worker pays once through the Lightning API, and then the
  member's balance dropped by exactly amount + the fee charged, the hub's invoice is paid, the
  node's channel side dropped by exactly the msat lightningd paid, and the Lightning API holds
  the one completed payment under the exchange's key.
- The Lightning API is published on lightning.lab's address to apps.lab only, and bitcoind's RPC
  on chain.lab answers lightning.lab only (the firewall drops the others: checked from mining.lab).

Everything is reached over the lab's SSH (the APIs listen on their host's loopback); the hub's
outside-world payer is its loopback-only simnet control API on cluster.lab.
"""

from __future__ import annotations

import json
import re
import shlex
import time
from typing import Any

import pytest

from scnode_lab.pytest_plugin import ConvergedLab, missing_requirements
from scnode_lab.remote import wait_for

pytestmark = [
    pytest.mark.testhosts,
    # the default lab (10.10.0.0/24) is one per machine: one xdist worker runs its tests
    pytest.mark.xdist_group("default-lab"),
    pytest.mark.slow,
    pytest.mark.timeout(1800),
    pytest.mark.skipif(missing_requirements() is not None, reason=str(missing_requirements())),
]

EXCHANGE = 8410
LIGHTNING_API = 8420
LIGHTNING_API_PUBLISHED = 8520
HUB_CONTROL = 9800
HUB_CLI = "/opt/simnet-hub/bin/lightning-cli --conf=/etc/simnet-hub.conf"
NODE_CLI = "/usr/local/bin/lightning-cli"


def _json(lab: ConvergedLab, host: str, command: str) -> Any:
    return json.loads(lab.on(host, command))


def _hub_id(lab: ConvergedLab) -> str:
    return str(_json(lab, "cluster", f"{HUB_CLI} getinfo")["id"])


def _node_channel(lab: ConvergedLab) -> dict[str, Any]:
    channels = _json(lab, "lightning", f"{NODE_CLI} listpeerchannels {_hub_id(lab)}")["channels"]
    assert len(channels) == 1, channels
    return dict(channels[0])


def _owner(lab: ConvergedLab, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    key = lab.token("apps", "exchange-owner")
    return lab.http("apps", f"http://127.0.0.1:{EXCHANGE}{path}", key, method, body)


def _member_token(lab: ConvergedLab, member_id: int) -> str:
    """A member session token, signed on apps.lab with the exchange's session secret."""
    code = (
        "import sys; from pathlib import Path; "
        "from scnode_exchange.api.auth import SessionTokens; "
        "secret = Path('/etc/scnode/exchange/session.secret').read_bytes().strip(); "
        "print(SessionTokens(secret, 3600).issue(int(sys.argv[1])))"
    )
    argv = ["/opt/scnode-apps/current/bin/python", "-c", code, str(member_id)]
    return lab.on("apps", shlex.join(argv)).strip()


def _sats(lab: ConvergedLab, member_id: int) -> int:
    code, body = _owner(lab, "GET", f"/api/owner/members/{member_id}")
    assert code == 200, body
    return int({b["asset"]: b["balance"] for b in body["balances"]}.get("SATS", 0))


def _zmq_count(lab: ConvergedLab, key: str, topic: str) -> float:
    code, text = lab.http("lightning", f"http://127.0.0.1:{LIGHTNING_API}/metrics", key)
    assert code == 200, text
    pattern = rf'^scnode_lightning_zmq_messages_total\{{topic="{topic}"\}} (\S+)$'
    found = re.search(pattern, str(text), re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def test_the_channel_to_the_lab_hub_is_normal_on_both_sides(converged_lab: ConvergedLab) -> None:
    channel = _node_channel(converged_lab)
    assert channel["state"] == "CHANNELD_NORMAL", channel
    assert channel["peer_connected"] is True
    assert int(channel["total_msat"]) == 5_000_000 * 1000  # lightning_cluster_channel_amount_sat
    node_id = _json(converged_lab, "lightning", f"{NODE_CLI} getinfo")["id"]
    hub_side = _json(converged_lab, "cluster", f"{HUB_CLI} listpeerchannels {node_id}")["channels"]
    assert [c["state"] for c in hub_side] == ["CHANNELD_NORMAL"], hub_side
    assert hub_side[0]["channel_id"] == channel["channel_id"]
    # both sides agree on the split; the lab gave the hub's side its inbound once
    assert int(hub_side[0]["to_us_msat"]) + int(channel["to_us_msat"]) == 5_000_000 * 1000
    assert 0 < int(hub_side[0]["to_us_msat"]) <= 2_000_000 * 1000  # lab_hub_inbound_sat


def test_the_lightning_api_reports_the_channel(converged_lab: ConvergedLab) -> None:
    assert converged_lab.http("lightning", f"http://127.0.0.1:{LIGHTNING_API}/healthz")[0] == 200
    read = converged_lab.token("lightning", "lightning-api-read")
    url = f"http://127.0.0.1:{LIGHTNING_API}/v1/status"
    assert converged_lab.http("lightning", url)[0] == 401  # details need a key
    code, status = converged_lab.http("lightning", url, read)
    assert code == 200, status
    channel = _node_channel(converged_lab)
    assert status["synced"] is True, status
    assert status["peer_connected"] is True, status
    assert status["channel"]["peer_id"] == _hub_id(converged_lab)
    assert status["channel"]["state"] == "CHANNELD_NORMAL"
    assert status["channel"]["local_msat"] == int(channel["to_us_msat"])
    assert status["ok"] is True, status


def test_a_member_deposit_over_lightning_is_credited_once(converged_lab: ConvergedLab) -> None:
    lab = converged_lab
    run = int(time.time())
    code, member = _owner(
        lab, "POST", "/api/owner/members", {"handle": f"ln{run}", "reason": "lab Lightning test"}
    )
    assert code == 201, member
    member_id = int(member["id"])
    token = _member_token(lab, member_id)
    read = lab.token("lightning", "lightning-api-read")
    zmq_before = _zmq_count(lab, read, "invoice_payment")
    local_before = int(_node_channel(lab)["to_us_msat"])

    amount = 21_000 + run % 1000  # whole sats: the exchange asks for amount * 1000 msat
    request = {"amount_sats": amount, "idempotency_key": f"lab-ln-{run}", "description": "lab"}
    url = f"http://127.0.0.1:{EXCHANGE}/v1/lightning/invoices"
    code, invoice = lab.http("apps", url, token, "POST", request)
    assert code == 201, invoice
    code, again = lab.http("apps", url, token, "POST", request)
    assert code == 200 and again["bolt11"] == invoice["bolt11"], again
    decoded = _json(lab, "lightning", f"{NODE_CLI} decode {shlex.quote(invoice['bolt11'])}")
    assert int(decoded["amount_msat"]) == amount * 1000
    assert _sats(lab, member_id) == 0

    # the simulated outside world pays it through the SC Cluster hub
    code, paid = lab.http(
        "cluster",
        f"http://127.0.0.1:{HUB_CONTROL}/v1/outside/pay",
        method="POST",
        body={"bolt11": invoice["bolt11"]},
    )
    assert code == 200, paid

    wait_for("the deposit credited", lambda: _sats(lab, member_id) == amount, timeout=60)
    # once: later catch-ups and events change nothing
    time.sleep(6)
    assert _sats(lab, member_id) == amount
    code, listed = lab.http("apps", url, token)
    assert code == 200, listed
    rows = [i for i in listed["invoices"] if i["payment_hash"] == invoice["payment_hash"]]
    assert [(r["state"], r["credited_sats"]) for r in rows] == [("credited", amount)], rows

    # the exchange ledger, the Lightning API and the channel agree
    assert int(_node_channel(lab)["to_us_msat"]) - local_before == amount * 1000
    code, recent = lab.http(
        "lightning", f"http://127.0.0.1:{LIGHTNING_API}/v1/events/recent?limit=1000", read
    )
    assert code == 200, recent
    events = recent["events"] if isinstance(recent, dict) else recent
    paid_events = [
        e
        for e in events
        if e["kind"] == "invoice_paid" and e["data"]["payment_hash"] == invoice["payment_hash"]
    ]
    assert len(paid_events) == 1, paid_events
    # cl-zmq's invoice_payment message reached the API (it wakes the reconciler)
    wait_for(
        "cl-zmq invoice_payment seen by the Lightning API",
        lambda: _zmq_count(lab, read, "invoice_payment") > zmq_before,
        timeout=30,
    )


def test_a_member_pays_an_invoice_once_and_the_books_agree(converged_lab: ConvergedLab) -> None:
    lab = converged_lab
    run = int(time.time())
    code, member = _owner(
        lab, "POST", "/api/owner/members", {"handle": f"lnpay{run}", "reason": "lab Lightning test"}
    )
    assert code == 201, member
    member_id = int(member["id"])
    token = _member_token(lab, member_id)
    # funded over Lightning first, so the channel holds what the member is owed
    funded = 50_000
    url = f"http://127.0.0.1:{EXCHANGE}/v1/lightning/invoices"
    request = {"amount_sats": funded, "idempotency_key": f"lab-fund-{run}", "description": "lab"}
    code, deposit = lab.http("apps", url, token, "POST", request)
    assert code == 201, deposit
    code, paid = lab.http(
        "cluster",
        f"http://127.0.0.1:{HUB_CONTROL}/v1/outside/pay",
        method="POST",
        body={"bolt11": deposit["bolt11"]},
    )
    assert code == 200, paid
    wait_for("the funding credited", lambda: _sats(lab, member_id) == funded, timeout=60)

    amount = 12_345
    label = f"lab-pay-{run}"
    invoice = _json(lab, "cluster", f"{HUB_CLI} invoice {amount * 1000} {label} lab-payment")
    local_before = int(_node_channel(lab)["to_us_msat"])
    pay_url = f"http://127.0.0.1:{EXCHANGE}/v1/lightning/payments"
    body = {"bolt11": invoice["bolt11"], "idempotency_key": f"lab-pay-{run}"}
    code, payment = lab.http("apps", pay_url, token, "POST", body)
    assert code == 201, payment
    assert payment["amount_sats"] == amount
    code, again = lab.http("apps", pay_url, token, "POST", body)
    assert code == 200 and again["id"] == payment["id"] and again["replayed"] is True, again

    def settled() -> dict[str, Any] | None:
        code, row = lab.http("apps", f"{pay_url}/{payment['id']}", token)
        assert code == 200, row
        assert row["state"] != "failed", row
        return row if row["state"] == "complete" else None

    done = wait_for("the payment complete", settled, timeout=90)
    assert done is not None
    fee = int(done["fee_sats"])
    assert 0 <= fee <= int(payment["max_fee_sats"])
    assert _sats(lab, member_id) == funded - amount - fee
    time.sleep(6)  # once: later worker passes change nothing
    assert _sats(lab, member_id) == funded - amount - fee

    hub_invoice = _json(lab, "cluster", f"{HUB_CLI} listinvoices {label}")["invoices"]
    assert [i["status"] for i in hub_invoice] == ["paid"], hub_invoice
    sent = _json(lab, "lightning", f"{NODE_CLI} listpays {invoice['bolt11']}")["pays"]
    assert [p["status"] for p in sent] == ["complete"], sent
    spent_msat = int(sent[0]["amount_sent_msat"])
    assert spent_msat >= amount * 1000
    assert local_before - int(_node_channel(lab)["to_us_msat"]) == spent_msat
    assert fee * 1000 >= spent_msat - amount * 1000  # the member is charged the fee rounded up


def test_lightning_rpc_and_api_are_reachable_only_from_their_clients(
    converged_lab: ConvergedLab,
) -> None:
    lab = converged_lab
    ip = {name: host.ip for name, host in lab.hosts.items()}
    published = f"http://{ip['lightning']}:{LIGHTNING_API_PUBLISHED}/healthz"
    assert lab.http("apps", published)[0] == 200
    # from another lab host the firewall drops the connection (curl gives up: status 0)
    assert lab.http("mining", published, timeout=5)[0] == 0
    # bitcoind's RPC on chain.lab: lightning.lab gets an answer (401 without credentials) ...
    rpc = f"http://{ip['chain']}:8332/"
    assert lab.http("lightning", rpc, method="POST", body={}, timeout=5)[0] == 401
    # ... mining.lab and the hub's host get nothing
    assert lab.http("mining", rpc, method="POST", body={}, timeout=5)[0] == 0
    assert lab.http("cluster", rpc, method="POST", body={}, timeout=5)[0] == 0
