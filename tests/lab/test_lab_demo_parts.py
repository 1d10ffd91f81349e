"""The parts of `make lab`'s demo seeding and converge runner that need no test host: the recap
parser the idempotence check relies on, the simnet bundle copied to cluster.lab (stable, so a
second `demo` run changes nothing), the miners' unit and environment, and the printout."""

from __future__ import annotations

import tarfile
from io import BytesIO
from pathlib import Path

import pytest

from scnode_lab import demo
from scnode_lab.lab import Lab
from scnode_lab.playbook import parse_recap, site_argv
from scnode_lab.process import LabError
from scnode_lab.settings import LabPaths

RECAP = """\
PLAY [x] ***
TASK [y] ***
ok: [chain.lab]

PLAY RECAP *********************************************************************
apps.lab                   : ok=88   changed=0    unreachable=0    failed=0    skipped=12   rescued=0    ignored=0
chain.lab                  : ok=120  changed=3    unreachable=0    failed=0    skipped=40   rescued=0    ignored=0
mining.lab                 : ok=7    changed=0    unreachable=1    failed=0    skipped=0    rescued=0    ignored=0
"""  # noqa: E501


def test_recap_counts_per_host() -> None:
    recap = parse_recap(RECAP)
    assert set(recap) == {"apps.lab", "chain.lab", "mining.lab"}
    assert recap["chain.lab"].changed == 3 and recap["chain.lab"].ok == 120
    assert recap["mining.lab"].unreachable == 1
    assert recap["apps.lab"].changed == 0 and recap["apps.lab"].failed == 0
    # a `changed=` inside task output above the recap is not a recap line
    assert parse_recap("ok: [x] => changed=5\n") == {}


def test_converge_command_line_is_make_labs() -> None:
    argv = site_argv("-vvv")
    assert Path(argv[0]).name == "ansible-playbook"
    assert argv[1:] == ["playbooks/site.yml", "-vvv"]


def test_simnet_bundle_is_stable_and_has_no_caches() -> None:
    first, digest = demo.simnet_bundle()
    second, again = demo.simnet_bundle()
    assert first == second and digest == again
    with tarfile.open(fileobj=BytesIO(first)) as tar:
        names = tar.getnames()
    assert "simnet/miners/__main__.py" in names and "simnet/miners/miner.py" in names
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]


def test_miner_units_point_at_the_translators() -> None:
    env = demo.env_text(demo.POOLS["azc"], "10.10.0.13")
    assert "URL=stratum+tcp://10.10.0.13:3336\n" in env
    assert "--miner mallory.rig9=1T" in env and "--miner alice.rig1=2T" in env
    assert "CONTROL=127.0.0.1:18302" in env
    unit = demo.unit_text()
    assert "SIMULATION" in unit and "DynamicUser=yes" in unit
    assert "EnvironmentFile=/etc/scnode-lab-demo/miners-%i.env" in unit


def test_summary_names_urls_credentials_and_commands(tmp_path: Path) -> None:
    lab = Lab("lab", LabPaths(cache=tmp_path / "cache", state_root=tmp_path / "state"))
    facts = demo.DemoFacts(members={"alice": 1, "bob": 2, "carol": 3}, payout_id="abc:0")
    facts.miners_seen_seconds = {"btc": 2.5, "azc": 3.0}
    text = demo.summary(lab, facts)
    for needle in (
        "http://127.0.0.1:8410",
        "http://127.0.0.1:8411/v1/stratum/workers",
        "exchange-owner.token",
        "alice (id 1)",
        "demo pay alice",
        "demo mine 1",
        "demo miners stop|start",
        "pool payout abc:0",
        "btc 2.5 s",
    ):
        assert needle in text


def test_demo_needs_a_running_lab(tmp_path: Path) -> None:
    lab = Lab("lab", LabPaths(cache=tmp_path / "cache", state_root=tmp_path / "state"))
    with pytest.raises(LabError, match="not up"):
        demo.Demo(lab)
