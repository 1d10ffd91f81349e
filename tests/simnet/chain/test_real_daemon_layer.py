"""The real-daemon path of the fixture layer (tests/daemons.py), run in CI without a real binary.

`SCNODE_REAL_BITCOIND` points at a two-line `bitcoind` that execs the stand-in, so the layer's
real path — its config file, `stop` by RPC, and mine/pay/reorg/double spend built from real
RPCs (`generatetoaddress`, a funder wallet's `sendtoaddress`, `invalidateblock`,
`prioritisetransaction`, `generatetodescriptor`, `generateblock`, `reconsiderblock`) — is
exercised on every run. With `SCNODE_REAL_BITCOIND` set (`make test-real`), the same tests run
against that real bitcoind (docs/real-daemons.md).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import pytest

from simnet.pytest_chain import ChainNode
from tests.daemons import FUNDER, RealChainNode, backend

USES_REAL_DAEMONS = True  # tests/simnet/chain/conftest.py


def _wrapper(directory: Path, name: str, module: str) -> Path:
    path = directory / name
    path.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m {module} "$@"\n')
    path.chmod(0o755)
    return path


@pytest.fixture
def fake_real(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The configured real bitcoind (`make test-real`), else a stand-in launched as one."""
    monkeypatch.delenv("SCNODE_REAL_AZCOIND", raising=False)
    configured = os.environ.get("SCNODE_REAL_BITCOIND")
    if configured:
        return Path(configured)
    bindir = tmp_path / "bin"
    bindir.mkdir()
    daemon = _wrapper(bindir, "bitcoind", "simnet.chain")
    _wrapper(bindir, "bitcoin-cli", "simnet.cli")
    monkeypatch.setenv("SCNODE_REAL_BITCOIND", str(daemon))
    return daemon


def test_variable_selects_the_real_path_per_coin(
    fake_real: Path, start_chain_node: Callable[..., ChainNode]
) -> None:
    assert (backend("bitcoin"), backend("azcoin")) == ("real", "stand-in")
    node = start_chain_node(coin="bitcoin")
    assert isinstance(node, RealChainNode) and node.real
    assert node.command[:2] == [str(fake_real), f"-datadir={node.datadir}"]
    conf = node.conf_path.read_text().splitlines()
    for line in ("connect=0", "natpmp=0", "dnsseed=0", "discover=0", "regtest=1", "listen=1"):
        assert line in conf
    assert "rpcbind=127.0.0.1" in conf and "bind=127.0.0.1" in conf
    assert conf.index("[regtest]") < conf.index(f"rpcport={node.rpc_port}")
    azc = start_chain_node(coin="azcoin")
    assert type(azc) is ChainNode and not azc.real


def test_mine_pay_and_reorg_with_real_rpcs(
    fake_real: Path, start_chain_node: Callable[..., ChainNode]
) -> None:
    node = start_chain_node(coin="bitcoin")
    node.rpc("createwallet", "wallet")
    address = node.rpc("getnewaddress", wallet="wallet")
    txid = node.pay(address, 250_000)
    # the funder paid and is unloaded again: the node's wallets look as with the stand-in
    assert node.rpc("listwallets") == ["wallet"]
    assert FUNDER in [w["name"] for w in node.rpc("listwalletdir")["wallets"]]
    assert node.rpc("getblockcount") == 101  # mined once to fund the funder
    assert node.rpc("gettransaction", txid, wallet="wallet")["amount"] == Decimal("0.0025")
    hashes = node.mine(1)
    assert node.rpc("getblock", hashes[0])["tx"][1:] == [txid]

    # a reorg puts the transaction into the first block of the new branch
    moved = node.reorg(1)
    assert moved["disconnected"] == hashes and len(moved["connected"]) == 2
    assert node.rpc("getbestblockhash") == moved["new_tip"] != moved["old_tip"]
    assert node.rpc("getblock", moved["connected"][0])["tx"][1:] == [txid]
    assert node.rpc("gettransaction", txid, wallet="wallet")["confirmations"] == 2

    # drop_txs: out of every new block, unconfirmed in the mempool
    dropped = node.reorg(2, drop_txs=True)
    assert dropped["height"] == 104
    assert node.rpc("gettransaction", txid, wallet="wallet")["confirmations"] == 0
    assert txid in node.rpc("getrawmempool")
    node.mine(3)
    assert txid in node.rpc("getrawmempool")
    # the old branch is valid again (reconsiderblock) but has less work
    tips = {t["hash"]: t["status"] for t in node.rpc("getchaintips")}
    assert tips[moved["new_tip"]] == "valid-fork"
    # and the payer can still spend its coins elsewhere: the payment conflicts out
    replaced = node.control("double_spend", txid=txid, mine=True)
    assert node.rpc("getblock", replaced["block"])["tx"][1:] == [replaced["txid"]]
    assert node.rpc("gettransaction", txid, wallet="wallet")["confirmations"] == -1
    assert txid not in node.rpc("getrawmempool")


def test_double_spend_confirms_a_conflict_and_faults_are_stand_in_only(
    fake_real: Path, start_chain_node: Callable[..., ChainNode]
) -> None:
    node = start_chain_node(coin="bitcoin")
    node.rpc("createwallet", "wallet")
    address = node.rpc("getnewaddress", wallet="wallet")
    txid = node.pay(address, 64_000)
    replaced = node.control("double_spend", txid=txid, mine=True)
    assert replaced["replaced"] == txid
    assert txid not in node.rpc("getrawmempool")
    assert node.rpc("getblock", replaced["block"])["tx"][1:] == [replaced["txid"]]
    assert node.rpc("getreceivedbyaddress", address, 0, wallet="wallet") == 0
    with pytest.raises(pytest.skip.Exception, match="stand-in only: control 'stall'"):
        node.stall(seconds=1.0)
    with pytest.raises(pytest.skip.Exception, match="stand-in only: control 'warmup'"):
        node.warmup("Verifying blocks…")


def test_cli_beside_the_daemon_and_stop_by_rpc(
    fake_real: Path, start_chain_node: Callable[..., ChainNode]
) -> None:
    node = start_chain_node(coin="bitcoin")
    node.mine(2)
    out = subprocess.run(
        [*node.cli_command, "getblockcount"], capture_output=True, text=True, timeout=30
    )
    assert (out.returncode, out.stdout.strip()) == (0, "2")
    assert node.stop() == 0
    node.start()
    assert node.rpc("getblockcount") == 2  # same datadir, same ports
