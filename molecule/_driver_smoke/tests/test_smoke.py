"""testinfra checks of the driver smoke scenario: run on each host over the lab's SSH."""

from __future__ import annotations

from typing import Any


def test_marker_was_converged(host: Any) -> None:
    marker = host.file("/etc/scnode-smoke")
    assert marker.exists
    assert marker.mode == 0o644
    assert marker.content_string.splitlines()[0] == host.backend.get_hostname()


def test_host_is_a_booted_trixie_system(host: Any) -> None:
    assert host.system_info.distribution == "debian"
    assert host.system_info.codename == "trixie"
    assert host.service("ssh").is_running


def test_peers_reach_each_other_over_the_bridge(host: Any) -> None:
    for line in host.file("/etc/scnode-smoke").content_string.splitlines()[1:]:
        _, address = line.split()
        assert host.run(f"ping -c1 -W2 {address}").rc == 0
