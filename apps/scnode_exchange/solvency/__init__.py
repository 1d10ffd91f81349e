"""Solvency: the periodic comparison of what the node holds (chain wallets, and the Lightning
channel's local side when Lightning deposits are on) with what the ledger owes its members,
with an alert when holdings fall short (README.md)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from scnode_exchange.chainclient import ChainApiClient
from scnode_exchange.lightning.client import LightningApiClient
from scnode_exchange.settings import client_key
from scnode_exchange.solvency.checker import SolvencyChecker, WalletBalance
from scnode_exchange.solvency.models import SolvencyAlert
from scnode_exchange.solvency.service import (
    AlertView,
    AssetSolvency,
    RecordResult,
    SolvencyMetrics,
    SolvencyReport,
    SolvencyService,
)

__all__ = [
    "AlertView",
    "AssetSolvency",
    "RecordResult",
    "SolvencyAlert",
    "SolvencyChecker",
    "SolvencyMetrics",
    "SolvencyReport",
    "SolvencyService",
    "WalletBalance",
    "start_solvency",
]

# the name the Lightning channel's holdings go by beside the chains' wallets
LIGHTNING_WALLET = "lightning"


def start_solvency(app: FastAPI, settings: Any, rt: Any) -> SolvencyChecker:
    """The checker the app runs in its lifespan (every ``solvency_interval_seconds``; 0 = no
    periodic check), also published as ``app.state.solvency`` for the owner's route. Its
    series go on the app's registry (``/metrics``), created once per app."""
    metrics = getattr(app.state, "solvency_metrics", None)
    if metrics is None:
        metrics = SolvencyMetrics(rt.metrics.registry)
        app.state.solvency_metrics = metrics
    chain_assets = {name: chain.asset for name, chain in settings.chains.items()}
    lightning = getattr(settings, "lightning", None)
    if lightning is not None:  # the channel's local side holds members' SATS too
        chain_assets[LIGHTNING_WALLET] = "SATS"
    service = SolvencyService(
        rt.sessions,
        chain_assets,
        confirm_checks=settings.solvency_confirm_checks,
        metrics=metrics,
    )
    wallets: dict[str, WalletBalance] = {
        name: ChainApiClient(chain.api_url, client_key(chain))
        for name, chain in settings.chains.items()
    }
    if lightning is not None:
        wallets[LIGHTNING_WALLET] = LightningApiClient(lightning.api_url, client_key(lightning))
    checker = SolvencyChecker(service, wallets, interval=settings.solvency_interval_seconds)
    app.state.solvency = checker
    return checker
