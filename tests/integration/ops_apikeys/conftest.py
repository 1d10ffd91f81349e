"""The chain API fixtures (a chain API process in front of a funded simnet node) and the
Lightning pair (a simnet lightningd with a channel to the simulated SC Cluster hub)."""

from tests.integration.chain_api.conftest import funded_node, start_chain_api
from tests.integration.lightning_api.conftest import shared_pair

__all__ = ["funded_node", "shared_pair", "start_chain_api"]
