"""Prometheus metrics of one chain API instance (own registry, so several apps can share a
process in tests)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class ChainMetrics:
    def __init__(self, chain: str) -> None:
        self.registry = CollectorRegistry()
        labels = {"chain": chain}
        self.blocks = Gauge("scnode_chain_blocks", "validated blocks", registry=self.registry)
        self.headers = Gauge("scnode_chain_headers", "known headers", registry=self.registry)
        self.peers = Gauge("scnode_chain_peers", "P2P connections", registry=self.registry)
        self.mempool = Gauge(
            "scnode_chain_mempool_transactions", "transactions in mempool", registry=self.registry
        )
        self.ibd = Gauge(
            "scnode_chain_initial_block_download", "1 while in IBD", registry=self.registry
        )
        self.balance = Gauge(
            "scnode_chain_wallet_balance_sats",
            "wallet balance by kind",
            ["kind"],
            registry=self.registry,
        )
        self.up = Gauge(
            "scnode_chain_daemon_up", "1 when the daemon answers", registry=self.registry
        )
        self.events = Counter(
            "scnode_chain_events", "events journalled", ["kind"], registry=self.registry
        )
        self.latency = Histogram(
            "scnode_chain_api_request_seconds",
            "API request latency",
            ["method", "route", "status"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=self.registry,
        )
        self.read_cache = Gauge(
            "scnode_chain_api_read_cache_lookups",
            "reads (deposit address, wallet balance) served from memory (hit) or asked of the "
            "wallet (miss)",
            ["read", "result"],
            registry=self.registry,
        )
        self.info = Gauge("scnode_chain_api_info", "instance", list(labels), registry=self.registry)
        self.info.labels(**labels).set(1)
