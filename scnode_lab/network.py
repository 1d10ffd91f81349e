"""The lab's network: a lab namespace with a bridge and a user-mode NAT uplink, and one
namespace per host joined to the bridge by a veth pair. Nothing is added to the host's own
namespace: the lab's private addresses exist only inside namespaces made here."""

from __future__ import annotations

import time
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

from scnode_lab.process import LabError, TrackedProcess, netns_exec, run, spawn_detached
from scnode_lab.settings import SLIRP_DNS

BRIDGE = "br0"
UPLINK = "tap0"
NETNS_DIR = Path("/run/netns")

# What may leave the lab through the user-mode NAT: DNS to slirp4netns' forwarder, and HTTP(S)
# (the Debian mirrors, PyPI, npm) to addresses outside the private, shared, link-local,
# loopback and multicast ranges. Everything else (a LAN, other ports: a role's NTP pool, a
# WireGuard endpoint, a real cluster) is refused inside the lab namespace, so no test sends such
# traffic off this machine. (Documentation ranges stay open: a sandbox may serve the package
# registries from one.) Masqueraded on the way out.
EGRESS_PORTS = (80, 443)
_NON_PUBLIC = (
    "0.0.0.0/8, 10.0.0.0/8, 100.64.0.0/10, 127.0.0.0/8, 169.254.0.0/16, 172.16.0.0/12, "
    "192.0.0.0/24, 192.168.0.0/16, 224.0.0.0/3"
)
_NAT_RULES = f"""table ip scnode_lab {{
  chain forward {{
    type filter hook forward priority filter; policy accept;
    oifname "{UPLINK}" ip daddr {SLIRP_DNS} meta l4proto {{ tcp, udp }} th dport 53 accept
    oifname "{UPLINK}" ip daddr {{ {_NON_PUBLIC} }} reject with icmp type admin-prohibited
    oifname "{UPLINK}" tcp dport {{ {", ".join(str(p) for p in EGRESS_PORTS)} }} accept
    oifname "{UPLINK}" reject with icmp type admin-prohibited
  }}
  chain postrouting {{
    type nat hook postrouting priority srcnat; policy accept;
    oifname "{UPLINK}" masquerade
  }}
}}
"""


def lab_netns(lab: str) -> str:
    """The lab namespace: bridge, uplink, and the end SSH connections start from."""
    return f"scnl-{lab}"


def host_netns(lab: str, host: str) -> str:
    # '.' is allowed in neither lab nor host names, so lab `a` never owns `a-b`'s namespaces.
    return f"scnl-{lab}.{host}"


def mac_for(ip: IPv4Address) -> str:
    """A locally administered MAC derived from the IP: a reused IP never meets a stale ARP
    entry pointing at another MAC (the 30-45 s SSH stalls in TESTHOSTS.md)."""
    return "02:5c:" + ":".join(f"{byte:02x}" for byte in ip.packed)


def list_netns() -> list[str]:
    out = run(["ip", "netns", "list"]).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def netns_exists(name: str) -> bool:
    return (NETNS_DIR / name).exists()


def delete_netns(name: str) -> None:
    if netns_exists(name):
        run(["ip", "netns", "delete", name])


def netns_pids(name: str) -> list[int]:
    if not netns_exists(name):
        return []
    out = run(["ip", "netns", "pids", name], check=False).stdout
    return [int(pid) for pid in out.split()]


def create_lab_netns(lab: str, subnet: IPv4Network) -> str:
    """The lab namespace with its bridge at the subnet's first address, forwarding on."""
    ns = lab_netns(lab)
    run(["ip", "netns", "add", ns])
    gateway = subnet.network_address + 1
    run(["ip", "-n", ns, "link", "set", "lo", "up"])
    run(["ip", "-n", ns, "link", "add", BRIDGE, "type", "bridge"])
    run(["ip", "-n", ns, "addr", "add", f"{gateway}/{subnet.prefixlen}", "dev", BRIDGE])
    run(["ip", "-n", ns, "link", "set", BRIDGE, "up"])
    run(netns_exec(ns, ["sysctl", "-qw", "net.ipv4.ip_forward=1"]))
    return ns


def start_uplink(lab: str, log: Path) -> TrackedProcess:
    """slirp4netns attached to the lab namespace; returns once its tap has an address."""
    ns = lab_netns(lab)
    slirp = spawn_detached(
        [
            "slirp4netns",
            "--configure",
            "--mtu=65520",
            "--disable-host-loopback",
            "--netns-type=path",
            str(NETNS_DIR / ns),
            UPLINK,
        ],
        log,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        shown = run(["ip", "-n", ns, "-4", "addr", "show", "dev", UPLINK], check=False).stdout
        if "inet " in shown:
            run(netns_exec(ns, ["nft", "-f", "-"]), input_text=_NAT_RULES)
            return slirp
        if not slirp.alive():
            break
        time.sleep(0.05)
    slirp.stop(2)
    raise LabError(f"slirp4netns did not configure {UPLINK} in {ns}: see {log}")


def attach_host(
    lab: str, index: int, host: str, ip: IPv4Address, subnet: IPv4Network
) -> tuple[str, str]:
    """A namespace for one host, its eth0 on the lab bridge. Returns (namespace, MAC)."""
    lab_ns = lab_netns(lab)
    ns = host_netns(lab, host)
    mac = mac_for(ip)
    gateway = subnet.network_address + 1
    veth = f"veth{index}"
    run(["ip", "netns", "add", ns])
    run(["ip", "-n", lab_ns, "link", "add", veth, "type", "veth", "peer", "name", "eth0",
         "netns", ns])  # fmt: skip
    run(["ip", "-n", lab_ns, "link", "set", veth, "master", BRIDGE, "up"])
    run(["ip", "-n", ns, "link", "set", "lo", "up"])
    run(["ip", "-n", ns, "link", "set", "eth0", "address", mac])
    run(["ip", "-n", ns, "addr", "add", f"{ip}/{subnet.prefixlen}", "dev", "eth0"])
    run(["ip", "-n", ns, "link", "set", "eth0", "up"])
    run(["ip", "-n", ns, "route", "add", "default", "via", str(gateway)])
    run(["ip", "-n", lab_ns, "neigh", "flush", "to", str(ip)], check=False)
    return ns, mac
