"""The Ansible inventory of a lab (YAML), shaped as DESIGN §8 lays out the lab."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from scnode_lab.ssh import common_options

# Groups of the SC Node's service hosts; a lab host named like a group joins it.
NODE_GROUPS = ("chain", "lightning", "mining", "apps")
CLUSTER_GROUP = "cluster"
NODE_PARENT = "scnode"


def connection_vars(lab: str, key: Path) -> dict[str, Any]:
    """How Ansible reaches the lab: root, the lab key, SSH through the lab namespace."""
    return {
        "ansible_user": "root",
        "ansible_ssh_private_key_file": str(key),
        "ansible_ssh_common_args": " ".join(_quoted_options(lab)),
        "ansible_python_interpreter": "/usr/bin/python3",
    }


def _quoted_options(lab: str) -> list[str]:
    options = common_options(lab)
    out: list[str] = []
    for flag, value in zip(options[::2], options[1::2], strict=True):
        name, _, setting = value.partition("=")
        out.append(f'{flag} {name}="{setting}"' if " " in setting else f"{flag} {value}")
    return out


def host_fqdn(host: str, lab: str) -> str:
    """A lab host's inventory name and FQDN: `chain.lab`. The bare name would clash with the
    group of the same name (Ansible warns about a host and a group both called `chain`)."""
    return f"{host}.{lab}"


def groups(lab: str, hosts: Sequence[tuple[str, str]]) -> dict[str, Any]:
    """The `children` of `all`: one group per role name present, `scnode` over the nodes."""
    by_name = {name: ip for name, ip in hosts}

    def members(name: str) -> dict[str, Any]:
        return {"hosts": {host_fqdn(name, lab): {"ansible_host": by_name[name]}}}

    children: dict[str, Any] = {}
    if CLUSTER_GROUP in by_name:
        children[CLUSTER_GROUP] = members(CLUSTER_GROUP)
    nodes = {group: members(group) for group in NODE_GROUPS if group in by_name}
    if nodes:
        children[NODE_PARENT] = {"children": nodes}
    others = {
        host_fqdn(name, lab): {"ansible_host": ip}
        for name, ip in hosts
        if name != CLUSTER_GROUP and name not in NODE_GROUPS
    }
    if others:
        children["lab_hosts"] = {"hosts": others}
    return children


def inventory(lab: str, key: Path, hosts: Sequence[tuple[str, str]]) -> dict[str, Any]:
    """A self-contained inventory: connection variables under `all.vars`."""
    return {"all": {"vars": connection_vars(lab, key), "children": groups(lab, hosts)}}


def write(path: Path, lab: str, key: Path, hosts: Sequence[tuple[str, str]]) -> Path:
    header = (
        f"# Inventory of the scnode-lab `{lab}` (written by `python -m scnode_lab up`).\n"
        "# Hosts are systemd-nspawn containers reached through the lab's network namespace.\n"
    )
    body = yaml.safe_dump(inventory(lab, key, hosts), sort_keys=False, width=200)
    path.write_text(header + "---\n" + body)
    return path
