"""Stand-in for bitcoind / azcoind / a microcurrency daemon (SIMULATION, test equipment only).

Run `python -m simnet.chain -regtest -datadir=...`; see simnet/README.md.
"""

VERSION_BANNER = (
    "*** {name}: simnet SIMULATION of the {coin} {network} daemon. NOT A REAL NODE. "
    "Blocks are mined at the regtest target; nothing here is money. ***"
)
