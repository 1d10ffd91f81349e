"""The simulated cluster pool pays the node's address for its acknowledged work."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from simnet.cluster.pool import ClusterPool, PoolConfig
from simnet.pytest_chain import ChainNode
from simnet.pytest_mining import MinerProcess, TranslatorProcess, wait_for


class FakeChannels:
    """Stands in for the monitoring API in the accounting unit tests."""

    def __init__(self) -> None:
        self.channels: list[dict[str, Any]] = []

    def set(self, *work: tuple[int, str, int]) -> None:
        self.channels = [
            {"channel_id": cid, "user_identity": ident, "acknowledged_work_sum": w}
            for cid, ident, w in work
        ]

    def __call__(self) -> list[dict[str, Any]]:
        return list(self.channels)


def _config(**overrides: Any) -> PoolConfig:
    base: dict[str, Any] = {
        "identity": "btc-SN1",
        "payout_address": "bcrt1qexample",
        "chain_control_url": "http://127.0.0.1:1",
        "reward_sats": 1000,
    }
    base.update(overrides)
    return PoolConfig(**base)


def test_work_counts_increases_and_survives_counter_resets(tmp_path: Path) -> None:
    fake = FakeChannels()
    pool = ClusterPool(_config(), fake, tmp_path / "state.json")
    fake.set((1, "btc-SN1.miner1", 100), (2, "btc-SN1.miner2", 50), (3, "other.miner1", 999))
    assert pool.poll() == 150
    fake.set((1, "btc-SN1.miner1", 130), (2, "btc-SN1.miner2", 50))
    assert pool.poll() == 30
    # the translator restarted: channel 1 counts from zero again
    fake.set((1, "btc-SN1.miner1", 20))
    assert pool.poll() == 20
    # not ours: a prefix that only looks alike
    fake.set((1, "btc-SN1.miner1", 20), (9, "btc-SN10.miner1", 500), (8, "btc-SN1.minerX", 7))
    assert pool.poll() == 0
    assert ClusterPool(_config(), fake, tmp_path / "state.json").ledger.unpaid_work == 200


def test_proportional_share_carries_the_remainder(tmp_path: Path) -> None:
    fake = FakeChannels()
    paid: list[int] = []
    pool = ClusterPool(_config(reward_sats=1000, other_work=2, dust_sats=0), fake)

    def fake_chain(call: str, body: dict[str, Any]) -> dict[str, Any]:
        if call == "pay":
            paid.append(int(body["sats"]))
            return {"txid": f"{len(paid):064x}"}
        return {"hashes": ["00" * 32]}

    pool._chain = fake_chain  # type: ignore[method-assign]
    for total in (1, 2, 3):  # one unit of work per period: 1000 * 1/3 each time
        fake.set((1, "btc-SN1.miner1", total))
        pool.run_period()
    assert paid == [333, 333, 334]  # exact integers, nothing lost
    fake.set((1, "btc-SN1.miner1", 3))
    assert pool.run_period() is None  # no work, no payout


def test_interrupted_payout_is_not_sent_again(tmp_path: Path) -> None:
    fake = FakeChannels()
    state = tmp_path / "state.json"
    pool = ClusterPool(_config(), fake, state)

    def broken_chain(call: str, body: dict[str, Any]) -> dict[str, Any]:
        raise OSError("chain went away")

    pool._chain = broken_chain  # type: ignore[method-assign]
    fake.set((1, "btc-SN1.miner1", 10))
    with pytest.raises(OSError):
        pool.run_period()
    again = ClusterPool(_config(), fake, state)
    assert [p["status"] for p in again.ledger.payouts] == ["unknown"]
    assert again.total_paid() == 0


def _mine_some(
    translator: TranslatorProcess,
    miners_factory: Callable[[str, dict[str, str]], MinerProcess],
) -> None:
    miners_factory(translator.url, {"alice.rig1": "2T", "bob.rig2": "2T"})
    wait_for(
        lambda: sum(c["acknowledged_work_sum"] for c in translator.channels()) > 0,
        timeout=40,
        what="acknowledged work",
    )


def test_payout_lands_as_a_transaction(
    translator: TranslatorProcess,
    miners_factory: Callable[[str, dict[str, str]], MinerProcess],
    start_chain_node: Callable[..., ChainNode],
    cluster_pool_factory: Callable[..., ClusterPool],
) -> None:
    chain = start_chain_node()
    chain.rpc("createwallet", "node")
    address = chain.rpc("getnewaddress", wallet="node")
    control = f"http://127.0.0.1:{chain.control_port}"
    _mine_some(translator, miners_factory)
    pool = cluster_pool_factory(translator, address, control, reward_sats=250_000)
    record = pool.run_period()
    assert record is not None and record["status"] == "sent" and record["sats"] == 250_000
    received = chain.rpc("getreceivedbyaddress", address, 1, wallet="node")
    assert Decimal(received) == Decimal("0.00250000")
    tx = chain.rpc("gettransaction", record["txid"], wallet="node")
    assert tx["confirmations"] >= 1


def test_payout_lands_as_an_immature_coinbase(
    translator: TranslatorProcess,
    miners_factory: Callable[[str, dict[str, str]], MinerProcess],
    start_chain_node: Callable[..., ChainNode],
    cluster_pool_factory: Callable[..., ClusterPool],
) -> None:
    chain = start_chain_node()
    chain.rpc("createwallet", "node")
    address = chain.rpc("getnewaddress", wallet="node")
    control = f"http://127.0.0.1:{chain.control_port}"
    _mine_some(translator, miners_factory)
    subsidy = 5_000_000_000  # regtest block subsidy at low heights
    pool = cluster_pool_factory(
        translator,
        address,
        control,
        reward_sats=subsidy,
        mode="coinbase",
        block_subsidy_sats=subsidy,
    )
    record = pool.run_period()
    assert record is not None and record["kind"] == "coinbase"
    balances = chain.rpc("getbalances", wallet="node")["mine"]
    assert Decimal(balances["immature"]) == Decimal("50.00000000")
    assert Decimal(balances["trusted"]) == 0
    chain.mine(100)
    balances = chain.rpc("getbalances", wallet="node")["mine"]
    assert Decimal(balances["trusted"]) == Decimal("50.00000000")


def test_pool_command_line_pays_once(
    translator: TranslatorProcess,
    miners_factory: Callable[[str, dict[str, str]], MinerProcess],
    start_chain_node: Callable[..., ChainNode],
    tmp_path: Path,
) -> None:
    chain = start_chain_node()
    chain.rpc("createwallet", "node")
    address = chain.rpc("getnewaddress", wallet="node")
    _mine_some(translator, miners_factory)
    state = tmp_path / "ledger.json"
    args = [
        sys.executable, "-m", "simnet.cluster", "pool",
        "--monitoring-url", translator.monitoring_url,
        "--identity", translator.user_identity,
        "--payout-address", address,
        "--chain-control", f"http://127.0.0.1:{chain.control_port}",
        "--reward-sats", "12345",
        "--state", str(state),
        "--once",
    ]  # fmt: skip
    result = subprocess.run(args, capture_output=True, text=True, timeout=60, env=translator.env)
    assert result.returncode == 0, result.stderr
    assert "SIMULATION" in result.stderr
    record = json.loads(result.stdout)
    assert record["sats"] == 12345 and record["status"] == "sent"
    assert json.loads(state.read_text())["payouts"][0]["txid"] == record["txid"]
    assert Decimal(chain.rpc("getreceivedbyaddress", address, 1, wallet="node")) == Decimal(
        "0.00012345"
    )


def test_aggregated_proxy_channel_counts_as_the_nodes(tmp_path: Path) -> None:
    fake = FakeChannels()
    pool = ClusterPool(_config(identity="btc-SN1"), fake)
    fake.set((1, "btc-SN1.translator-proxy", 70), (2, "btc-SN2.translator-proxy", 5))
    assert pool.poll() == 70
