"""The chain API fixtures: a chain API process per test in front of a funded simnet node."""

from tests.integration.chain_api.conftest import funded_node, start_chain_api

__all__ = ["funded_node", "start_chain_api"]
