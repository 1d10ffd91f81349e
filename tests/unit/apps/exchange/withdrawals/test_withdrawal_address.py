"""The segwit address check refuses other networks, typos and malformed programs."""

from __future__ import annotations

import pytest

from scnode_exchange.withdrawals.address import AddressError, decode_segwit, encode_segwit


@pytest.mark.parametrize(
    ("hrp", "address", "version"),
    [
        # BIP 173 / BIP 350 test vectors
        ("bc", "BC1QW508D6QEJXTDG4Y5R3ZARVARY0C5XW7KV8F3T4", 0),
        ("tb", "tb1qrp33g0q5c5txsp9arysrx4k6zdkfs4nce4xj0gdcccefvpysxf3q0sl5k7", 0),
        ("bc", "bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqzk5jj0", 1),
        ("bcrt", encode_segwit("bcrt", 0, bytes(20)), 0),
        ("az", encode_segwit("az", 0, bytes(range(32))), 0),
    ],
)
def test_valid_addresses_decode(hrp: str, address: str, version: int) -> None:
    assert decode_segwit(hrp, address)[0] == version


@pytest.mark.parametrize(
    ("hrp", "address", "why"),
    [
        ("bcrt", "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4", "another network"),
        ("az", "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4", "another network"),
        ("bc", "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t5", "checksum"),
        ("bc", "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3T4", "mixes"),
        # v1 with the old bech32 checksum (BIP 350 invalid vector)
        ("bc", "bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqh2y7hd", "variant"),
        # v0 with a 21-byte program
        ("bc", encode_segwit("bc", 0, bytes(21)), "20 or 32"),
        ("bc", "1BoatSLRHtKNngkdXEeobR76b53LETtpyT", "not a bech32"),
        ("bc", "bc1", "length"),
    ],
)
def test_bad_addresses_are_refused_with_a_reason(hrp: str, address: str, why: str) -> None:
    with pytest.raises(AddressError, match=why):
        decode_segwit(hrp, address)
