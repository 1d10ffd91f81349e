"""The lightning role's prune guard (roles/lightning/files/lightning-prune-guard.py): bitcoind
is pruned only below lightningd's height minus a margin, towards the size budget, and a lagging
lightningd raises an alert.

The decision is tested as a pure function; then the script runs for real against the simnet
bitcoind stand-in (prune=1, regtest: it prunes only above height 1000) and a stand-in lightningd
held behind the tip, reading the same config files the role writes.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from simnet.pytest_lightning import LightningNodeHandle, StandinChain

SCRIPT = Path(__file__).resolve().parents[3] / "roles/lightning/files/lightning-prune-guard.py"
MIB = 1024 * 1024


def _guard() -> ModuleType:
    spec = importlib.util.spec_from_file_location("lightning_prune_guard", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


GUARD = _guard()


def _chain(blocks: int, pruneheight: int, size_mib: int, **extra: Any) -> dict[str, Any]:
    return {
        "blocks": blocks,
        "pruneheight": pruneheight,
        "size_on_disk": size_mib * MIB,
        "pruned": True,
        "automatic_pruning": False,
        **extra,
    }


def _plan(chain: dict[str, Any], height: int, budget_mib: int = 1000) -> Any:
    return GUARD.plan(chain, height, budget_mib=budget_mib, margin=144, keep=288, lag_alert=12)


def test_within_budget_nothing_is_pruned() -> None:
    decided = _plan(_chain(100_000, 0, 900), 100_000)
    assert decided.prune_to is None
    assert decided.alert is None


def test_over_budget_prunes_towards_the_budget() -> None:
    # 100,001 blocks in 2000 MiB: dropping 1000 MiB is dropping half of them
    decided = _plan(_chain(100_000, 0, 2000), 100_000)
    assert decided.prune_to == 50_001
    assert decided.alert is None


def test_never_above_lightningd_minus_the_margin_and_alert_when_it_lags() -> None:
    decided = _plan(_chain(100_000, 0, 2000), 40_000)
    assert decided.prune_to == 40_000 - 144
    assert decided.alert is not None
    assert "60000 blocks behind" in decided.alert


def test_never_closer_to_the_tip_than_keep_blocks() -> None:
    decided = _plan(_chain(1_000, 0, 100_000), 1_000)
    assert decided.prune_to == 1_000 - 288


def test_a_lag_within_the_threshold_is_no_alert() -> None:
    assert _plan(_chain(100_000, 0, 10), 99_990).alert is None
    assert _plan(_chain(100_000, 0, 10), 99_987).alert is not None


def test_automatic_or_no_pruning_is_left_alone() -> None:
    assert _plan(_chain(100_000, 0, 5000, automatic_pruning=True), 100_000).prune_to is None
    assert _plan(_chain(100_000, 0, 5000, pruned=False), 100_000).prune_to is None
    # already pruned at least as far as it may go
    assert _plan(_chain(100_000, 99_000, 5000), 99_100).prune_to is None


def _write_config(tmp: Path, node: LightningNodeHandle, chain: StandinChain) -> Path:
    """The role's two files: the config and the included bitcoind credentials."""
    secret = tmp / "bitcoin-rpc.conf"
    secret.write_text(f"bitcoin-rpcpassword={chain.password}\n")
    conf = tmp / "config"
    conf.write_text(
        f"network=regtest\nlightning-dir={node.rpc_path.parent.parent}\n"
        f"bitcoin-rpcconnect=127.0.0.1\nbitcoin-rpcport={chain.port}\n"
        f"bitcoin-rpcuser={chain.user}\ninclude {secret}\n"
    )
    return conf


def _run(conf: Path, *args: str) -> tuple[int, dict[str, Any], str]:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), f"--conf={conf}", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    status = json.loads(done.stdout) if done.stdout.strip() else {}
    return done.returncode, status, done.stderr


def test_prunes_the_standin_bitcoind_only_below_a_lagging_lightningd(
    start_chain_node: Callable[..., Any], ln_dir: Path, tmp_path: Path
) -> None:
    chain = StandinChain(start_chain_node(prune=1))
    chain.mine(1100)
    base = ln_dir / "node"
    base.mkdir()
    node = LightningNodeHandle(base, chain, alias="node", zmq=False)  # starts at the tip
    try:
        node.wait_synced(timeout=30)
        held = node.blockheight()
        node.hold(held)  # lightningd stops following here...
        chain.mine(400)  # ...and falls 400 blocks behind
        tip = chain.height()
        conf = _write_config(tmp_path, node, chain)
        code, status, err = _run(conf, "--budget-mib=0", "--margin=10", "--dry-run")
        assert status["lag"] == 400
        assert status["prune_to"] == held - 10
        assert status["pruned_to"] is None
        assert chain.call("getblockchaininfo")["pruneheight"] == 0  # a dry run prunes nothing
        status_file = tmp_path / "status.json"
        code, status, err = _run(
            conf, "--budget-mib=0", "--margin=10", f"--status-file={status_file}"
        )
        assert code == 1, err  # an alert: the unit fails where monitoring sees it
        assert "ALERT: lightningd is 400 blocks behind bitcoind" in err
        assert status["lightningd_height"] == held == tip - 400
        assert status["prune_to"] == held - 10
        info = chain.call("getblockchaininfo")
        assert info["pruneheight"] == held - 10 + 1  # nothing lightningd still needs is gone
        assert json.loads(status_file.read_text())["pruned_to"] == held - 10
        assert "Block not available" not in node.log_text()

        # below the alert threshold: no alert, and nothing more to prune until lightningd moves
        code, status, err = _run(conf, "--budget-mib=0", "--margin=10", "--lag-alert=500")
        assert code == 0, err
        assert status["alert"] is None
        assert status["prune_to"] is None
    finally:
        node.stop()


def test_nothing_is_pruned_when_lightningd_cannot_be_asked(
    start_chain_node: Callable[..., Any], tmp_path: Path
) -> None:
    chain = StandinChain(start_chain_node(prune=1))
    conf = tmp_path / "config"
    conf.write_text(
        f"network=regtest\nlightning-dir={tmp_path}\nbitcoin-rpcport={chain.port}\n"
        f"bitcoin-rpcuser={chain.user}\nbitcoin-rpcpassword={chain.password}\n"
    )
    code, status, err = _run(conf, "--budget-mib=0")
    assert code == 2
    assert "ALERT: cannot ask lightningd" in err
    assert status == {}
