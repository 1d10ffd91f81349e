"""Simulated Stratum V1 miners."""
