"""Stratum stats API: follows one SRI translator's log, stores per-worker share windows, serves
REST, a WebSocket live feed and Prometheus metrics (``python -m scnode_stratum``)."""

__version__ = "0.1.0"
