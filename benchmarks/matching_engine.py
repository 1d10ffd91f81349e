"""Order operations per second of the exchange's matching engine on one core.

A reproducible mix around a moving mid price: 60 % resting limit orders (GTC/post-only),
25 % cancels of random resting orders, 15 % crossing orders (IOC / market / marketable GTC)
that match. Prints operations/s, fills and the book size. Target (issue 6): >= 50,000 ops/s.

    .venv/bin/python benchmarks/matching_engine.py [--ops 300000] [--seed 1]
"""

from __future__ import annotations

import argparse
import random
import time

from scnode_exchange.matching import (
    Fill,
    MarketSpec,
    OrderBook,
    OrderRequest,
    OrderType,
    Side,
    TimeInForce,
)


def build_ops(count: int, seed: int) -> list[tuple[str, object]]:
    """Pre-generate the operations so the timing measures the engine only."""
    rng = random.Random(seed)  # noqa: S311  (a reproducible workload, not key material)
    ops: list[tuple[str, object]] = []
    live: list[int] = []
    mid = 100_000
    for order_id in range(1, count + 1):
        roll = rng.random()
        mid += rng.choice((-10, 0, 10))
        if roll < 0.25 and live:
            ops.append(("cancel", live.pop(rng.randrange(len(live)))))
            continue
        side = Side.BUY if rng.random() < 0.5 else Side.SELL
        member = rng.randrange(200)
        qty = rng.randint(1, 20)
        if roll < 0.85:
            offset = rng.randint(1, 50) * 10
            price = mid - offset if side is Side.BUY else mid + offset
            tif = TimeInForce.POST_ONLY if rng.random() < 0.2 else TimeInForce.GTC
            ops.append(("place", OrderRequest(order_id, member, side, price, qty, tif=tif)))
            live.append(order_id)
        else:
            through = rng.randint(0, 30) * 10
            price = mid + through if side is Side.BUY else mid - through
            kind = OrderType.MARKET if rng.random() < 0.3 else OrderType.LIMIT
            tif = TimeInForce.IOC if rng.random() < 0.5 else TimeInForce.GTC
            ops.append(("place", OrderRequest(order_id, member, side, price, qty, kind, tif)))
            if tif is TimeInForce.GTC and kind is OrderType.LIMIT:
                live.append(order_id)
    return ops


def main() -> None:
    """Run the mix once and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", type=int, default=300_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    spec = MarketSpec("AZC/SATS", "AZC", "SATS", lot_size=1_000_000, tick=10,
                      maker_fee_bps=10, taker_fee_bps=20)  # fmt: skip
    ops = build_ops(args.ops, args.seed)
    book = OrderBook(spec)
    place, cancel = book.place, book.cancel
    fills = events = 0
    start = time.perf_counter()
    for kind, arg in ops:
        out = place(arg) if kind == "place" else cancel(arg)  # type: ignore[arg-type]
        events += len(out)
        for event in out:
            if type(event) is Fill:
                fills += 1
    elapsed = time.perf_counter() - start
    print(f"operations        {len(ops):>12,}")
    print(f"  places/cancels  {sum(k == 'place' for k, _ in ops):>12,} / "
          f"{sum(k == 'cancel' for k, _ in ops):,}")  # fmt: skip
    print(f"fills             {fills:>12,}")
    print(f"events            {events:>12,}")
    print(f"resting at end    {len(book):>12,}")
    print(f"elapsed           {elapsed:>12.3f} s")
    print(f"operations/s      {len(ops) / elapsed:>12,.0f}   (target >= 50,000)")


if __name__ == "__main__":
    main()
