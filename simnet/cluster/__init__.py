"""Simulated SC Cluster parts (pool payouts; see pool.py)."""
