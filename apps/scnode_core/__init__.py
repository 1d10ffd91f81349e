"""Shared core of the SC Node apps: API keys, settings helpers, clients."""

__version__ = "0.1.0"
