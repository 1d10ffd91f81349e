"""Prometheus metrics of the Lightning API (own registry, so several apps can share a process
in tests)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class LightningMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.up = Gauge("scnode_lightning_daemon_up", "1 when lightningd answers", registry=r)
        self.blockheight = Gauge(
            "scnode_lightning_blockheight", "lightningd's block height", registry=r
        )
        self.blocks_behind = Gauge(
            "scnode_lightning_blocks_behind", "blocks lightningd trails bitcoind", registry=r
        )
        self.synced = Gauge("scnode_lightning_synced", "1 when synced to the chain", registry=r)
        self.peer_connected = Gauge(
            "scnode_lightning_peer_connected", "1 when the cluster peer is connected", registry=r
        )
        self.channel_normal = Gauge(
            "scnode_lightning_channel_normal",
            "1 when the main channel is CHANNELD_NORMAL",
            registry=r,
        )
        self.channel_msat = Gauge(
            "scnode_lightning_channel_balance_msat",
            "main channel balance by side (local, remote, spendable, receivable)",
            ["side"],
            registry=r,
        )
        self.payments = Gauge(
            "scnode_lightning_api_payments", "payments recorded by state", ["state"], registry=r
        )
        self.zmq_messages = Counter(
            "scnode_lightning_zmq_messages", "cl-zmq messages received", ["topic"], registry=r
        )
        self.events = Counter("scnode_lightning_events", "events journalled", ["kind"], registry=r)
        # auto-balancing (rebalance.py)
        self.rebalance_enabled = Gauge(
            "scnode_lightning_rebalance_enabled", "1 when auto-balancing runs", registry=r
        )
        self.rebalance_alert = Gauge(
            "scnode_lightning_rebalance_alert",
            "1 while an auto-balancing alert is active",
            ["kind"],
            registry=r,
        )
        self.rebalance_alerts = Counter(
            "scnode_lightning_rebalance_alerts",
            "auto-balancing alerts raised",
            ["kind"],
            registry=r,
        )
        self.rebalance_swaps = Counter(
            "scnode_lightning_rebalance_swaps",
            "swaps with the SC Cluster finished",
            ["direction", "outcome"],
            registry=r,
        )
        self.rebalance_budget_used = Gauge(
            "scnode_lightning_rebalance_budget_used",
            "today's (UTC) auto-balancing budget used (moved_sat, fees_sat)",
            ["kind"],
            registry=r,
        )
        self.rebalance_local_fraction = Gauge(
            "scnode_lightning_rebalance_local_fraction",
            "main channel's local balance / capacity at the last check",
            registry=r,
        )
        self.latency = Histogram(
            "scnode_lightning_api_request_seconds",
            "API request latency",
            ["method", "route", "status"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 30),
            registry=r,
        )
