"""testinfra checks of the common role on two scnode-lab hosts (run by `molecule verify`).

What a user would notice: the admin logs in with a key and gets sudo, passwords are refused,
a port nobody opened is unreachable from the other host while opened ones answer. Time sync
and kernel settings can only be checked by configuration here: in a container the host owns
the clock (timesyncd's own condition keeps it stopped) and /proc/sys is read-only.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import testinfra

LAB_CACHE = Path(os.environ.get("SCNODE_LAB_CACHE", "/var/cache/scnode-lab"))
LAB_KEY = LAB_CACHE / "ssh" / "id_ed25519"
SCENARIO = os.environ.get("MOLECULE_SCENARIO_NAME", "common")
INVENTORY = os.environ.get("MOLECULE_INVENTORY_FILE", "")
HOSTS = ("common-a", "common-b")


def address(host: Any) -> str:
    return str(host.ansible.get_variables()["ansible_host"])


def peer_of(host: Any) -> Any:
    name = host.ansible.get_variables()["inventory_hostname"]
    other = HOSTS[1] if name == HOSTS[0] else HOSTS[0]
    return testinfra.get_host(f"ansible://{other}?ansible_inventory={INVENTORY}")


def ssh_from_controller(user: str, ip: str, *options: str, command: str = "true") -> Any:
    """Log in like a technician would: through the lab namespace, with the lab key."""
    proxy = f"ProxyCommand=ip netns exec scnl-molecule-{SCENARIO} socat - TCP:%h:%p"
    argv = [
        "ssh",
        "-o", proxy,
        "-o", "StrictHostKeyChecking=no",
        "-o", "UserKnownHostsFile=/dev/null",
        "-o", "BatchMode=yes",
        "-o", "ConnectTimeout=10",
        *options,
        f"{user}@{ip}",
        command,
    ]  # fmt: skip
    return subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)


# --------------------------------------------------------------------------- users and SSH


def test_admin_logs_in_with_the_key_and_has_sudo(host: Any) -> None:
    result = ssh_from_controller(
        "satoshi", address(host), "-i", str(LAB_KEY), command="sudo -n id -u"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "0"
    keys = host.file("/home/satoshi/.ssh/authorized_keys")
    assert keys.user == "satoshi"
    assert keys.mode == 0o600
    assert LAB_KEY.with_suffix(".pub").read_text().split()[1] in keys.content_string


def test_ssh_offers_public_keys_only(host: Any) -> None:
    # Without a key the server has nothing else to offer: no password, no keyboard-interactive.
    result = ssh_from_controller(
        "satoshi",
        address(host),
        "-o", "PubkeyAuthentication=no",
        "-o", "PreferredAuthentications=password,keyboard-interactive",
        "-o", "IdentitiesOnly=yes",
    )  # fmt: skip
    assert result.returncode == 255
    assert "Permission denied (publickey)" in result.stderr
    effective = host.run("sshd -T").stdout.lower().splitlines()
    assert "passwordauthentication no" in effective
    assert "kbdinteractiveauthentication no" in effective
    # sshd -T spells prohibit-password by its old name
    assert "permitrootlogin without-password" in effective
    assert "x11forwarding no" in effective


def test_admin_account_has_no_usable_password(host: Any) -> None:
    shadow = host.run("getent shadow satoshi").stdout.split(":")
    assert shadow[1].startswith("!") or shadow[1] == "*"


# --------------------------------------------------------------------------- firewall


@pytest.fixture
def listeners(host: Any) -> Iterator[list[int]]:
    """socat listeners on ports 7777 (never opened), 8080, 8081 and 8082 of this host."""
    ports = [7777, 8080, 8081, 8082]
    for port in ports:
        host.run(
            f"systemd-run --unit=probe-{port} socat TCP-LISTEN:{port},fork,reuseaddr"
            " EXEC:'echo hello'"
        )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if all(host.socket(f"tcp://0.0.0.0:{port}").is_listening for port in ports):
            break
        time.sleep(0.2)
    try:
        yield ports
    finally:
        host.run("systemctl stop " + " ".join(f"probe-{port}" for port in ports))


def connect(from_host: Any, ip: str, port: int) -> Any:
    return from_host.run(
        f"timeout 5 socat -T3 - TCP:{shlex.quote(ip)}:{port},connect-timeout=3 </dev/null"
    )


def test_firewall_blocks_what_nobody_opened_and_passes_openings(
    host: Any, listeners: list[int]
) -> None:
    peer = peer_of(host)
    ip = address(host)
    # The listener itself works: loopback is always allowed.
    assert connect(host, "127.0.0.1", 7777).stdout.strip() == "hello"
    closed = connect(peer, ip, 7777)
    assert closed.rc != 0 and "hello" not in closed.stdout
    # Dropped, not refused: the connection attempt times out.
    assert "timed out" in closed.stderr.lower() or closed.rc == 124
    # Opened through the firewall_opening entry point (a role) and the inventory list.
    assert connect(peer, ip, 8080).stdout.strip() == "hello"
    assert connect(peer, ip, 8081).stdout.strip() == "hello"
    # Opened only for a network the peer is not in.
    assert connect(peer, ip, 8082).rc != 0


def test_ruleset_is_default_deny_and_survives_a_reload(host: Any) -> None:
    assert host.service("nftables").is_enabled
    chain = host.run("nft list chain inet scnode input").stdout
    assert "hook input priority filter; policy drop;" in chain
    assert host.run("systemctl reload nftables").rc == 0
    openings = host.run("nft list chain inet scnode openings").stdout
    assert 'tcp dport 8080 accept comment "test: role opening"' in openings
    assert 'tcp dport 8081 accept comment "test: inventory opening"' in openings
    assert "ip saddr 192.0.2.0/24 tcp dport 8082 accept" in openings
    assert "ip6 saddr 2001:db8::/32 tcp dport 8082 accept" in openings


# --------------------------------------------------------------------------- upgrades, time, logs


def test_unattended_upgrades_take_security_updates_daily(host: Any) -> None:
    config = host.run("apt-config dump").stdout
    assert 'APT::Periodic::Unattended-Upgrade "1";' in config
    assert 'APT::Periodic::Update-Package-Lists "1";' in config
    origins = [
        line
        for line in config.splitlines()
        if line.startswith("Unattended-Upgrade::Origins-Pattern:: ")
    ]
    assert origins == [
        'Unattended-Upgrade::Origins-Pattern:: "origin=Debian,codename=${distro_codename}'
        '-security,label=Debian-Security";'
    ]
    assert 'Unattended-Upgrade::Automatic-Reboot "false";' in config
    assert host.run("systemctl is-enabled apt-daily-upgrade.timer").stdout.strip() == "enabled"


def test_time_sync_is_configured(host: Any) -> None:
    # Configuration only: in a container the host owns the clock and timesyncd's
    # ConditionVirtualization=!container keeps it stopped (DESIGN §8).
    config = host.run("systemd-analyze cat-config systemd/timesyncd.conf").stdout
    assert "NTP=0.debian.pool.ntp.org 1.debian.pool.ntp.org" in config
    assert host.service("systemd-timesyncd").is_enabled
    assert host.run("date +%Z").stdout.strip() == "UTC"


def test_journal_is_persistent_and_limited(host: Any) -> None:
    config = host.run("systemd-analyze cat-config systemd/journald.conf").stdout
    assert "SystemMaxUse=1G" in config
    assert "MaxRetentionSec=3month" in config
    machine_id = host.file("/etc/machine-id").content_string.strip()
    assert host.file(f"/var/log/journal/{machine_id}").is_directory


def test_sysctl_hardening_file(host: Any) -> None:
    # The file only: most keys are read-only inside a container; a real host applies them.
    sysctl = host.file("/etc/sysctl.d/90-scnode-hardening.conf")
    assert sysctl.mode == 0o644
    assert "-kernel.kptr_restrict = 2" in sysctl.content_string
    assert "-net.ipv4.conf.all.accept_redirects = 0" in sysctl.content_string


def test_hostname(host: Any) -> None:
    name = host.ansible.get_variables()["inventory_hostname"]
    assert host.run("hostname").stdout.strip() == name


# --------------------------------------------------------------------------- the baseline


def test_hardening_baseline_starts_a_sandboxed_service(host: Any) -> None:
    probe = host.service("scnode-hardening-probe")
    assert (
        probe.is_running
        or host.run("systemctl show -p ActiveState --value scnode-hardening-probe").stdout.strip()
        == "active"
    )
    shown = host.run(
        "systemctl show -p ProtectSystem -p NoNewPrivileges -p PrivateTmp -p ProtectHome"
        " -p CapabilityBoundingSet scnode-hardening-probe"
    ).stdout.splitlines()
    assert "ProtectSystem=strict" in shown
    assert "NoNewPrivileges=yes" in shown
    assert "PrivateTmp=yes" in shown
    assert "ProtectHome=yes" in shown
    assert "CapabilityBoundingSet=" in shown
    journal = host.run("journalctl -b -u scnode-hardening-probe --no-pager").stdout
    assert "Unknown key" not in journal and "Failed to parse" not in journal
