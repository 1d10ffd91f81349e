"""`make lab`'s mining and apps hosts end to end (issues 7 and 11): the stratum stats APIs next to
the translators, the exchange on the apps host, and a simnet pool payout split among members.

Uses the default lab (`lab`, 10.10.0.0/24) like `make lab`: brings it up when it is not (and then
removes it again) and converges `playbooks/site.yml` on the chain, mining and apps hosts; a second
run of the plays this test is about (`--tags apps,stratum_translator`: chain APIs, translators,
stats APIs, exchange) must change nothing — the common and chain_node plays' second runs are
their own tests' (test_lab_chain_apis, molecule), which keeps this one inside its time budget.
Then, from this machine:

- simulated miners (simnet, in the lab's namespace) hash through the BTC translator on mining.lab,
  and their workers appear in the BTC stats API (`/v1/stratum/workers`, with its read key);
- the owner (the exchange's owner key, generated on apps.lab) adds two members and registers
  their worker names; a third worker stays unregistered;
- the simulated SC Cluster pool (simnet's `ClusterPool`, run here) pays the node's wallet on the
  simulated bitcoin chain with a coinbase for the node's acknowledged work, and 100 more blocks
  mature it; the exchange's payout watcher then splits it: owner fee, each member's part by
  their workers' acknowledged share work over the payout window, the unregistered worker's
  part to suspense — visible in the owner's payout list and in the members' ledger balances.

The pool and miners reach the lab hosts' loopback-only APIs over the lab's SSH (the API hosts
forbid SSH forwarding), and the exchange reaches the chain and stats APIs over the addresses
they are published on (firewalled to apps.lab only: checked from mining.lab).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest

from scnode_lab import network
from scnode_lab.lab import DEFAULT_NAME, Lab, lab_spec
from scnode_lab.pytest_plugin import missing_requirements
from simnet.cluster.pool import ClusterPool, PoolConfig

pytestmark = [
    pytest.mark.testhosts,
    # both converge the default lab (10.10.0.0/24): one xdist worker runs them one after the other
    pytest.mark.xdist_group("default-lab"),
    pytest.mark.slow,
    pytest.mark.timeout(1800),
    pytest.mark.skipif(missing_requirements() is not None, reason=str(missing_requirements())),
]

ROOT = Path(__file__).resolve().parents[2]
HOSTS = ("chain.lab", "mining.lab", "apps.lab")
_RECAP = re.compile(r"^(\S+)\s*:\s*ok=\d+\s+changed=(\d+)\s+unreachable=0\s+failed=0", re.MULTILINE)
STATS_BTC = 8411
EXCHANGE = 8410
CHAIN_CONTROL_BTC = 9332  # simnet bitcoind's control API: RPC port + 1000, loopback only
MONITORING_BTC = 9093
# two members' workers and one nobody registered
WORKERS = {"alice.rig1": "2T", "bob.rig1": "1T", "mallory.rig9": "1T"}
REGISTERED = {"alice.rig1": "alice", "bob.rig1": "bob"}


def _playbook(*extra: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1")
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"
    argv = [str(Path(sys.executable).parent / "ansible-playbook"), "playbooks/site.yml"]
    return subprocess.run(
        [*argv, "--limit", ",".join(HOSTS), *extra],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1500,
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
def lab() -> Iterator[Lab]:
    lab = Lab(DEFAULT_NAME)
    was_up = lab.load() is not None
    lab.up(lab_spec(DEFAULT_NAME, "10.10.0.0/24", None))
    yield lab
    if not was_up:
        lab.down()


@pytest.fixture(scope="module")
def converged(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Lab:
    apps = _snapshot(tmp_path_factory.mktemp("apps"))
    for run, only in ((1, []), (2, ["--tags", "apps,stratum_translator"])):
        started = time.monotonic()
        result = _playbook("-e", f"scnode_apps_source_dir={apps}", *only)
        recap = dict(_RECAP.findall(result.stdout))
        assert result.returncode == 0 and set(recap) == set(HOSTS), (
            f"site.yml run {run}:\n{result.stdout[-6000:]}"
        )
        print(f"site.yml run {run}: {time.monotonic() - started:.0f} s, changed {recap}")
    assert set(recap.values()) == {"0"}, f"second site.yml run changed tasks: {recap}"
    return lab


def _on(lab: Lab, host: str, command: str, timeout: float = 60) -> str:
    """Run `command` on the lab host named by its inventory name (`mining.lab`)."""
    result = subprocess.run(
        lab.ssh(host.split(".")[0], command),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=True,
    )
    return result.stdout


def _http(
    lab: Lab, host: str, url: str, key: str | None = None, method: str = "GET", body: Any = None
) -> tuple[int, Any]:
    args = ["curl", "-s", "-X", method, "-w", "\\n%{http_code}", "--max-time", "20"]
    if key:
        args += ["-H", f"Authorization: Bearer {key}"]
    if body is not None:
        args += ["-H", "Content-Type: application/json", "-d", json.dumps(body)]
    out = _on(lab, host, shlex.join([*args, url]))
    text, _, code = out.rpartition("\n")
    return int(code), json.loads(text) if text.strip() else None


def _token(lab: Lab, host: str, name: str) -> str:
    return _on(lab, host, f"cat /etc/scnode/keys/{name}.token").strip()


def _wait(what: str, check: Callable[[], Any], timeout: float, every: float = 2.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


@pytest.fixture(scope="module")
def miners(converged: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """simnet's SV1 miners in the lab's namespace, pointed at mining.lab's BTC translator."""
    log = tmp_path_factory.mktemp("miners") / "miners.log"
    argv = ["ip", "netns", "exec", network.lab_netns(converged.name), sys.executable]
    argv += ["-m", "simnet.miners", "--url", "stratum+tcp://10.10.0.13:3333"]
    for worker, rate in WORKERS.items():
        argv += ["--miner", f"{worker}={rate}"]
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _workers(lab: Lab, key: str) -> dict[str, dict[str, Any]]:
    code, body = _http(lab, "mining.lab", f"http://127.0.0.1:{STATS_BTC}/v1/stratum/workers", key)
    assert code == 200, body
    return {w["worker"]: w for w in body["workers"]}


def _acknowledged(lab: Lab, key: str) -> dict[str, float]:
    url = f"http://127.0.0.1:{STATS_BTC}/v1/stratum/work?start=0"
    code, body = _http(lab, "mining.lab", url, key)
    assert code == 200, body
    work = {**body["workers"], **body["unattributed"]}
    return {name: float(w["accepted_difficulty"]) for name, w in work.items()}


def test_miners_appear_in_the_stats_api_with_acknowledged_work(
    converged: Lab, miners: None
) -> None:
    read = _token(converged, "mining.lab", "stratum-api-btc-read")
    seen = _wait(
        "every simnet worker in the BTC stats API",
        lambda: (w := _workers(converged, read)) and set(WORKERS) <= set(w) and w,
        timeout=60,
    )
    assert all(seen[name]["connected"] for name in WORKERS), seen
    assert seen["alice.rig1"]["member"] == "alice"
    _wait(
        "acknowledged share work of every worker",
        lambda: all(_acknowledged(converged, read).get(name, 0) > 0 for name in WORKERS),
        timeout=120,
    )
    # without a key nothing; the stats API is published to apps.lab only (mining.lab itself
    # is not a source: the firewall drops it there, loopback answers)
    assert _http(converged, "mining.lab", f"http://127.0.0.1:{STATS_BTC}/v1/stratum/pool")[0] == 401


def _owner(lab: Lab) -> Callable[..., tuple[int, Any]]:
    key = _token(lab, "apps.lab", "exchange-owner")

    def call(method: str, path: str, body: Any = None) -> tuple[int, Any]:
        url = f"http://127.0.0.1:{EXCHANGE}{path}"
        return _http(lab, "apps.lab", url, key, method, body)

    return call


class _LabPool(ClusterPool):
    """simnet's cluster pool, reaching the chain stand-in's control API over the lab's SSH."""

    def __init__(self, lab: Lab, config: PoolConfig) -> None:
        self.lab = lab

        def channels() -> list[dict[str, Any]]:
            url = f"http://127.0.0.1:{MONITORING_BTC}/api/v1/server/channels?offset=0&limit=100"
            code, page = _http(lab, "mining.lab", url)
            assert code == 200, page
            return list(page["extended_channels"])

        super().__init__(config, channels)

    def _chain(self, call: str, body: dict[str, Any]) -> Any:
        code, answer = _http(
            self.lab,
            "chain.lab",
            f"http://127.0.0.1:{CHAIN_CONTROL_BTC}/{call}",
            None,
            "POST",
            body,
        )
        assert code == 200, answer
        return answer


def test_a_pool_payout_matures_and_is_split_among_the_members(converged: Lab, miners: None) -> None:
    owner = _owner(converged)
    code, body = owner("GET", "/v1/owner/mining/payouts?pool=btc")
    assert code == 200, body
    earlier = {p["id"] for p in body["payouts"]}  # a lab that was up may have split some
    members = {}
    run = int(time.time())  # new members each run: their balances are this payout's parts
    for handle in sorted(set(REGISTERED.values())):
        new = {"handle": f"{handle}-{run}", "reason": "lab test"}
        code, body = owner("POST", "/api/owner/members", new)
        assert code == 201, body
        members[handle] = body["id"]
    for worker, handle in REGISTERED.items():
        body = {"member_id": members[handle], "reason": "lab test: the member's rig"}
        code, answer = owner("PUT", f"/v1/owner/mining/workers/btc/{worker}", body)
        assert code == 200, answer

    read = _token(converged, "mining.lab", "stratum-api-btc-read")
    _wait(
        "acknowledged share work of every worker",
        lambda: all(_acknowledged(converged, read).get(name, 0) > 0 for name in WORKERS),
        timeout=120,
    )

    # The node's payout address: a wallet address of its own label (a coinbase is never a
    # member deposit), from the chain API with the chain host's deposit key.
    deposit = _token(converged, "chain.lab", "chain-api-bitcoin-deposit")
    code, answer = _http(
        converged,
        "chain.lab",
        "http://127.0.0.1:8401/v1/members/pool-payout/addresses",
        deposit,
        "POST",
    )
    assert code == 201, answer
    subsidy = 312_500_000
    pool = _LabPool(
        converged,
        PoolConfig(
            identity="btc-LAB0001",
            payout_address=answer["address"],
            chain_control_url="ssh://chain.lab",
            reward_sats=subsidy,
            mode="coinbase",
            block_subsidy_sats=subsidy,
        ),
    )
    record = pool.run_period()
    assert record is not None and record["kind"] == "coinbase", pool.ledger
    # 100 more blocks: the coinbase matures (both chains' consensus rule)
    pool._chain("mine", {"blocks": 100})

    def split() -> dict[str, Any] | None:
        code, body = owner("GET", "/v1/owner/mining/payouts?pool=btc")
        assert code == 200, body
        return next((p for p in body["payouts"] if p["id"] not in earlier), None)

    payout = _wait("the exchange's split of the mature payout", split, timeout=120)
    assert payout["asset"] == "SATS" and payout["fee_bps"] == 200
    assert payout["amount"] > 0 and payout["window_start"] < payout["window_end"]
    assert payout["fee"] == -(-payout["amount"] * 200 // 10_000)
    distributable = payout["amount"] - payout["fee"]
    parts = {p["member_id"]: p for p in payout["parts"]}
    assert set(parts) == set(members.values())
    total = Fraction(payout["total_work"])
    for part in parts.values():
        assert part["work"] > 0
        assert part["amount"] == int(distributable * Fraction(part["work"]) / total)
    unknown = {w["worker"]: w["work"] for w in payout["unknown_workers"]}
    assert set(unknown) == {"mallory.rig9"}
    assert payout["unattributed_amount"] == int(
        distributable * Fraction(unknown["mallory.rig9"]) / total
    )
    assert (
        payout["fee"]
        + sum(p["amount"] for p in parts.values())
        + payout["unattributed_amount"]
        + payout["remainder"]
        == payout["amount"]
    )
    # the work the split used is what the stats API counted for those workers in its window
    url = (
        f"http://127.0.0.1:{STATS_BTC}/v1/stratum/work"
        f"?start={payout['window_start']}&end={payout['window_end']}"
    )
    code, window = _http(converged, "mining.lab", url, read)
    assert code == 200, window
    for worker, handle in REGISTERED.items():
        counted = window["workers"][worker]["accepted_difficulty"]
        assert parts[members[handle]]["work"] == pytest.approx(counted)

    # each member's ledger balance is exactly its part (nothing else credited it)
    for handle, member_id in members.items():
        code, body = owner("GET", f"/api/owner/members/{member_id}")
        assert code == 200, body
        sats = {b["asset"]: b["balance"] for b in body["balances"]}["SATS"]
        assert sats == parts[member_id]["amount"] > 0, (handle, body)


def test_apis_are_published_to_the_apps_host_only(converged: Lab) -> None:
    # From apps.lab the published chain and stats APIs answer (health is public) ...
    for url in ("http://10.10.0.11:8501/healthz", "http://10.10.0.13:8511/healthz"):
        assert _http(converged, "apps.lab", url)[0] == 200, url
    # ... from another lab host the firewall drops the connection (curl gives up: code 000)
    out = _on(
        converged,
        "chain.lab",
        "curl -s -o /dev/null -w '%{http_code}' --max-time 3 http://10.10.0.13:8511/healthz; true",
    )
    assert out.strip() == "000", out
    # the APIs themselves listen on loopback only; the socket proxy holds the published port
    listening = _on(converged, "mining.lab", f"ss -Htln 'sport = :{STATS_BTC}'").split()
    assert listening[3] == f"127.0.0.1:{STATS_BTC}", listening


def test_exchange_runs_sandboxed_with_secrets_generated_on_the_node(converged: Lab) -> None:
    shown = _on(
        converged,
        "apps.lab",
        "systemctl show scnode-exchange.service -p ActiveState -p User -p ProtectSystem "
        "-p ReadWritePaths -p ExecStartPre",
    )
    props = dict(line.split("=", 1) for line in shown.splitlines() if "=" in line)
    assert props["ActiveState"] == "active" and props["User"] == "scnode-exchange"
    assert props["ProtectSystem"] == "strict"
    assert props["ReadWritePaths"] == "/var/lib/scnode/exchange"
    assert "scnode_exchange.migrate" in props["ExecStartPre"]
    modes = _on(
        converged,
        "apps.lab",
        "stat -c '%n %a %U %G' /etc/scnode/exchange/session.secret "
        "/etc/scnode/exchange/client-keys/chain-api-bitcoin.key "
        "/etc/scnode/exchange/client-keys/stratum-api-btc.key "
        "/etc/scnode/keys/exchange-owner.token",
    ).splitlines()
    assert [m.split(" ", 1)[1] for m in modes] == [
        "640 root scnode-exchange",
        "640 root scnode-exchange",
        "640 root scnode-exchange",
        "600 root root",
    ]
    # the settings name key files, never keys; the copied key is the chain host's exchange key
    settings = _on(converged, "apps.lab", "cat /etc/scnode/exchange/settings.env")
    copied = _on(
        converged, "apps.lab", "cat /etc/scnode/exchange/client-keys/chain-api-bitcoin.key"
    )
    assert copied.strip() == _token(converged, "chain.lab", "chain-api-bitcoin-exchange")
    assert copied.strip() not in settings and "api_key_file" in settings
    # every start migrated first (the first one created the schema): a backup exactly when an
    # existing schema was upgraded
    journal = _on(
        converged, "apps.lab", "journalctl -u scnode-exchange -o cat --no-pager | grep before"
    )
    starts = [json.loads(line) for line in journal.splitlines() if line.startswith("{")]
    assert starts, journal
    for start in starts:
        upgraded = start["before"] is not None and start["before"] != start["after"]
        assert (start["backup"] is not None) == upgraded, start
    backups = _on(converged, "apps.lab", "ls /var/lib/scnode/exchange/backups 2>/dev/null; true")
    assert sorted(backups.split()) == sorted(Path(s["backup"]).name for s in starts if s["backup"])
