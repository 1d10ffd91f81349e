"""Figures of the test-host tool: start time per host, RAM per idle host, teardown time.

Run as root with the image cached (`python -m scnode_lab image`):
    .venv/bin/python benchmarks/lab_hosts.py [--hosts 5] [--rounds 2]
It starts a lab on 10.10.240.0/24 (name `bench-<pid>`), measures, and removes it.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

from scnode_lab import image
from scnode_lab.lab import Lab, lab_spec
from scnode_lab.settings import LabPaths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    paths = LabPaths.from_env()
    started = time.monotonic()
    built = image.ensure_image(paths)
    print(f"image {built.key}: ready in {time.monotonic() - started:.1f} s (cached if ~0)")

    name = f"bench-{os.getpid()}"
    hosts = [f"h{i}" for i in range(args.hosts)]
    ups: list[float] = []
    downs: list[float] = []
    pss: list[float] = []
    for _ in range(args.rounds):
        lab = Lab(name, paths)
        t0 = time.monotonic()
        lab.up(lab_spec(name, "10.10.240.0/24", hosts))
        ups.append(time.monotonic() - t0)
        time.sleep(5)  # let the boot's one-off jobs finish before measuring idle RAM
        pss.extend(h.pss_mib for h in lab.status() if h.pss_mib is not None)
        t0 = time.monotonic()
        lab.down()
        downs.append(time.monotonic() - t0)

    up = statistics.median(ups)
    print(
        f"up, {args.hosts} hosts (SSH + boot finished): median {up:.1f} s "
        f"({up / args.hosts:.2f} s per host), rounds {[round(u, 1) for u in ups]}"
    )
    print(f"RAM per idle host (PSS incl. nspawn): median {statistics.median(pss):.1f} MiB")
    print(f"down: median {statistics.median(downs):.1f} s")
    print(f"load average during the run: {os.getloadavg()[0]:.1f} (2 cores)")


if __name__ == "__main__":
    main()
