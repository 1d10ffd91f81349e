"""The lab's shape, inventory and image key: pure logic, no root needed."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

import pytest
import yaml

from scnode_lab import container, image, inventory, network
from scnode_lab.lab import lab_spec
from scnode_lab.process import LabError
from scnode_lab.settings import LabPaths

REPO = Path(__file__).resolve().parents[2]


def test_default_lab_has_the_design_hosts() -> None:
    spec = lab_spec()
    assert spec.subnet == IPv4Network("10.10.0.0/24")
    assert [(h.name, str(h.ip)) for h in spec.hosts] == [
        ("cluster", "10.10.0.2"),
        ("chain", "10.10.0.11"),
        ("lightning", "10.10.0.12"),
        ("mining", "10.10.0.13"),
        ("apps", "10.10.0.14"),
    ]


def test_other_subnet_keeps_the_host_numbers() -> None:
    spec = lab_spec("molecule-x", "10.10.5.0/24")
    assert str(spec.hosts[1].ip) == "10.10.5.11"
    assert spec.gateway == IPv4Address("10.10.5.1")


def test_hosts_by_address_number_or_next_free() -> None:
    spec = lab_spec("t", "10.10.9.0/24", "a=10.10.9.20,b=11,c,d")
    assert [(h.name, str(h.ip)) for h in spec.hosts] == [
        ("a", "10.10.9.20"),
        ("b", "10.10.9.11"),
        ("c", "10.10.9.12"),
        ("d", "10.10.9.13"),
    ]


@pytest.mark.parametrize(
    ("name", "hosts", "why"),
    [
        ("Lab", "a", "lab name"),
        ("lab.x", "a", "lab name"),
        ("t", "a.b", "host name"),
        ("t", "a_b", "host name"),
        ("t", "a=10.10.8.5", "not a usable host address"),
        ("t", "a=1", "not a usable host address"),
        ("t", "a=255", "not a usable host address"),
        ("t", "a=11,b=11", "unique"),
        ("t", "a,a", "unique"),
        ("t", "", "at least one host"),
    ],
)
def test_bad_shapes_are_refused(name: str, hosts: str, why: str) -> None:
    with pytest.raises(LabError, match=why):
        lab_spec(name, "10.10.9.0/24", hosts)


def test_mac_is_derived_from_the_address() -> None:
    assert network.mac_for(IPv4Address("10.10.0.11")) == "02:5c:0a:0a:00:0b"
    assert network.mac_for(IPv4Address("10.10.1.11")) != network.mac_for(IPv4Address("10.10.0.11"))


def test_namespaces_of_one_lab_never_match_another() -> None:
    # `down` of lab `a` removes `scnl-a` and `scnl-a.*`: lab `a-b`'s must not match.
    assert not network.host_netns("a-b", "x").startswith(network.lab_netns("a") + ".")


def _merged_committed_inventory() -> dict[str, Any]:
    lab_dir = REPO / "inventories" / "lab"
    hosts = yaml.safe_load((lab_dir / "hosts.yml").read_text())
    group_vars: dict[str, Any] = {}
    for path in sorted((lab_dir / "group_vars" / "all").glob("*.yml")):
        group_vars.update(yaml.safe_load(path.read_text()) or {})
    return {"all": {"vars": group_vars, **hosts["all"]}}


def test_committed_lab_inventory_is_what_the_tool_writes() -> None:
    spec = lab_spec()
    generated = inventory.inventory(
        "lab",
        Path("/var/cache/scnode-lab/ssh/id_ed25519"),
        [(h.name, str(h.ip)) for h in spec.hosts],
    )
    committed = _merged_committed_inventory()
    assert committed["all"]["children"] == generated["all"]["children"]
    for key, value in generated["all"]["vars"].items():
        # The folded YAML scalar and the generated one differ only in whitespace.
        assert " ".join(str(committed["all"]["vars"][key]).split()) == value


def test_inventory_groups_node_hosts_under_scnode() -> None:
    children = inventory.groups("lab", [("cluster", "10.10.0.2"), ("chain", "10.10.0.11")])
    assert children["cluster"]["hosts"] == {"cluster.lab": {"ansible_host": "10.10.0.2"}}
    assert children["scnode"]["children"]["chain"]["hosts"] == {
        "chain.lab": {"ansible_host": "10.10.0.11"}
    }
    other = inventory.groups("m", [("instance", "10.10.3.11")])
    assert other == {"lab_hosts": {"hosts": {"instance.m": {"ansible_host": "10.10.3.11"}}}}


def test_ssh_args_go_through_the_lab_namespace() -> None:
    args = inventory.connection_vars("m", Path("/k"))["ansible_ssh_common_args"]
    assert 'ProxyCommand="ip netns exec scnl-m socat - TCP:%h:%p"' in args


def test_package_list_parsing() -> None:
    text = "# comment\nsystemd\n\n  curl  # the client\nsystemd\n"
    assert image.parse_packages(text) == ["systemd", "curl"]


def test_image_key_follows_the_package_list_only() -> None:
    base = image.packages()
    assert image.image_key(base) == image.image_key(list(reversed(base)))
    assert image.image_key(base) != image.image_key([*base, "jq"])


def test_baked_list_has_the_recipe_and_the_stand_ins_libraries() -> None:
    baked = set(image.packages())
    assert set(image.BOOTSTRAP_PACKAGES) <= baked
    assert {"python3-zmq", "python3-aiohttp", "python3-bitcoinlib", "nftables"} <= baked


def test_prune_removes_only_images_nobody_keeps(tmp_path: Path) -> None:
    paths = LabPaths(cache=tmp_path / "cache", state_root=tmp_path / "state")
    paths.images.mkdir(parents=True)
    for key in ("old", "used", "new"):
        (paths.images / f"trixie-{key}.tar.zst").write_bytes(b"x")
        (paths.rootfs / key).mkdir(parents=True)
        (paths.rootfs / key / ".scnode-lab-complete").touch()
    (paths.rootfs / "build-abc").mkdir()  # a build in progress has no completion mark

    assert image.prune(paths, keep={"used", "new"}) == ["old"]
    assert sorted(p.name for p in paths.rootfs.iterdir()) == ["build-abc", "new", "used"]
    assert sorted(p.name for p in paths.images.glob("*.tar.zst")) == [
        "trixie-new.tar.zst",
        "trixie-used.tar.zst",
    ]


def test_local_cas_are_trusted_in_the_host_root(tmp_path: Path) -> None:
    source = tmp_path / "local-cas"
    source.mkdir()
    pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----"
    (source / "egress.crt").write_text(pem)
    (source / "notes.crt").write_text("not a certificate")
    root = tmp_path / "root"
    (root / "etc/ssl/certs").mkdir(parents=True)
    (root / "etc/ssl/certs/ca-certificates.crt").write_text("BUNDLE\n")

    assert container.trust_local_cas(root, source) == ["egress.crt"]
    assert (root / "etc/ssl/certs/ca-certificates.crt").read_text() == f"BUNDLE\n{pem}\n"
    assert (root / "usr/local/share/ca-certificates/egress.crt").read_text() == pem
    assert (root / "etc/ssl/certs/egress.pem").readlink() == Path(
        "/usr/local/share/ca-certificates/egress.crt"
    )
