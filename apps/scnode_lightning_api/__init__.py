"""The SC Node's Lightning API: invoices, payments, channel health and events of the node's
Core Lightning, for the exchange (LaaS) and the owner dashboard."""

__version__ = "0.1.0"
