"""The collection as a user gets it: built into a tarball, installed into an empty path, used.

Builds with `ansible-galaxy collection build` (galaxy.yml `build_ignore` decides what ships),
installs offline into a temporary path and uses the installed copy only: the playbook runs from
a directory without the repository's ansible.cfg and `collections/` link.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
pytestmark = pytest.mark.slow

# Never in the tarball: generated trees, caches, virtualenvs, test equipment, tests' output.
EXCLUDED_PREFIXES = (
    "collections/",
    ".venv/",
    ".ansible/",
    ".cache/",
    ".git/",
    ".lab/",
    "tests/",
    "simnet/",
    "scnode_lab/",
    "molecule/",
    "benchmarks/",
    "dist/",
    "build/",
)
EXCLUDED_PARTS = ("__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache", ".hypothesis")


def run(*argv: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=180, check=False
    )
    assert result.returncode == 0, f"{argv}\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def user_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, str]]]:
    """A working directory and environment that know nothing about the repository."""
    work = tmp_path_factory.mktemp("collection-user")
    (work / "ansible.cfg").write_text("[defaults]\n")
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("ANSIBLE_", "MOLECULE_"))
    }
    env.update(
        PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
        ANSIBLE_CONFIG=str(work / "ansible.cfg"),
        ANSIBLE_LOCAL_TEMP=str(work / "tmp"),
        ANSIBLE_HOME=str(work / "home"),
        ANSIBLE_NOCOLOR="1",
    )
    yield work, env


@pytest.fixture(scope="module")
def tarball(user_env: tuple[Path, dict[str, str]]) -> Path:
    work, env = user_env
    out = work / "dist"
    run(
        str(BIN / "ansible-galaxy"), "collection", "build", "--force",
        "--output-path", str(out), str(REPO), cwd=work, env=env,
    )  # fmt: skip
    (built,) = out.glob("satoshiware-scnode-*.tar.gz")
    return built


@pytest.fixture(scope="module")
def installed(user_env: tuple[Path, dict[str, str]], tarball: Path) -> Path:
    work, env = user_env
    path = work / "installed"
    run(
        str(BIN / "ansible-galaxy"), "collection", "install", "--offline",
        "-p", str(path), str(tarball), cwd=work, env=env,
    )  # fmt: skip
    return path


def test_tarball_ships_the_collection_and_nothing_else(tarball: Path) -> None:
    with tarfile.open(tarball) as archive:
        names = [member.name.removeprefix("./") for member in archive.getmembers()]
    assert names, "empty tarball"
    for required in (
        "MANIFEST.json",
        "FILES.json",
        "meta/runtime.yml",
        "roles/common/tasks/main.yml",
        "roles/common/meta/argument_specs.yml",
        "plugins/modules/chain_info.py",
        "plugins/module_utils/_chain_rpc.py",
        "plugins/doc_fragments/chain_rpc.py",
    ):
        assert required in names, required
    leaked = [
        name
        for name in names
        if name.startswith(EXCLUDED_PREFIXES)
        or name in {prefix.rstrip("/") for prefix in EXCLUDED_PREFIXES}
        or any(part in EXCLUDED_PARTS for part in name.split("/"))
        or name.endswith((".pyc", ".tar.gz"))
        or ".egg-info" in name
    ]
    assert leaked == []
    # The app-deploying role installs the apps from these sources: they ship, their tests don't.
    if (REPO / "apps" / "pyproject.toml").exists():
        assert "apps/pyproject.toml" in names
        assert not [name for name in names if name.startswith("apps/") and "/tests/" in name]


def test_installed_collection_is_usable_by_fqcn(
    user_env: tuple[Path, dict[str, str]], installed: Path
) -> None:
    work, env = user_env
    env = {**env, "ANSIBLE_COLLECTIONS_PATH": str(installed)}
    root = installed / "ansible_collections" / "satoshiware" / "scnode"
    assert (root / "roles" / "common" / "tasks" / "main.yml").is_file()
    assert not (root / "collections").exists()
    playbook = work / "site.yml"
    playbook.write_text(
        "---\n"
        "- name: Base of every host\n"
        "  hosts: all\n"
        "  roles:\n"
        "    - role: satoshiware.scnode.common\n"
        "- name: Ask a node for its state\n"
        "  hosts: all\n"
        "  module_defaults:\n"
        "    group/satoshiware.scnode.chain_rpc:\n"
        "      rpc_url: http://127.0.0.1:8332\n"
        "  tasks:\n"
        "    - name: Read the chain state\n"
        "      satoshiware.scnode.chain_info:\n"
        "        rpc_cookie_file: /var/lib/bitcoin/.cookie\n"
    )
    run(
        str(BIN / "ansible-playbook"), "--syntax-check", "-i", "localhost,", str(playbook),
        cwd=work, env=env,
    )  # fmt: skip
    doc = run(
        str(
            BIN / "ansible-doc",
        ),
        "satoshiware.scnode.chain_info",
        cwd=work,
        env=env,
    )
    assert str(root / "plugins" / "modules" / "chain_info.py") in doc.stdout
    assert "rpc_password" in doc.stdout  # from the shared doc fragment
    role_doc = run(
        str(BIN / "ansible-doc"), "-t", "role", "satoshiware.scnode.common", cwd=work, env=env
    )
    assert "firewall_opening" in role_doc.stdout
    assert "common_firewall_allowed_tcp_ports" in role_doc.stdout
