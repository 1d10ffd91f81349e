"""The lab's release mirror: served on the bridge for the lab's hosts, pinned, gone after down."""

from __future__ import annotations

import hashlib
import urllib.parse
from collections.abc import Callable

import pytest

from scnode_lab import mirror
from scnode_lab.pytest_plugin import LabHandle, missing_requirements

pytestmark = [
    pytest.mark.testhosts,
    pytest.mark.timeout(600),
    pytest.mark.skipif(missing_requirements() is not None, reason=str(missing_requirements())),
]


def test_hosts_download_releases_whose_sums_match_the_recorded_pins(
    scnode_lab: LabHandle,
) -> None:
    recorded = mirror.info(scnode_lab.lab.state_dir)
    assert recorded is not None
    gateway = scnode_lab.spec.gateway
    assert recorded["url"] == f"http://{gateway}:{mirror.MIRROR_PORT}"
    sums_path = "bin/bitcoin-core-30.2/SHA256SUMS"
    azcoin_sums = "satoshiware/azcoin/releases/download/v0.2.2/SHA256SUMS"
    assert {sums_path, azcoin_sums} <= set(recorded["sums"])
    served = scnode_lab.ssh("node-a", f"curl -sf {recorded['url']}/{sums_path}").stdout
    assert hashlib.sha256(served.encode()).hexdigest() == recorded["sums"][sums_path]
    # The archive a SHA256SUMS line names is served with that hash.
    line = next(entry for entry in served.splitlines() if "x86_64-linux-gnu.tar.gz" in entry)
    digest, name = line.split()
    url = f"{recorded['url']}/bin/bitcoin-core-30.2/{urllib.parse.quote(name.lstrip('*'))}"
    got = scnode_lab.ssh("node-a", f"curl -sf {url} | sha256sum").stdout.split()[0]
    assert got == digest


def test_up_again_keeps_the_mirror_and_down_stops_it(
    scnode_lab_factory: Callable[..., LabHandle],
) -> None:
    lab = scnode_lab_factory(("solo",))
    first = mirror.info(lab.lab.state_dir)
    assert first is not None
    lab.lab.up(lab.spec)  # a second up of the running lab
    again = mirror.info(lab.lab.state_dir)
    assert again == first, "up of a running lab restarted or rebuilt its mirror"
    pid = int(first["process"]["pid"])
    lab.down()
    cmdline = f"/proc/{pid}/cmdline"
    try:
        with open(cmdline, "rb") as handle:
            still = b"simnet.mirror" in handle.read()
    except FileNotFoundError:
        still = False
    assert not still, "the mirror server outlived lab down"
    assert mirror.info(lab.lab.state_dir) is None
