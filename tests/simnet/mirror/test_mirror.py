"""The release mirror serves upstream-named archives whose launchers run the stand-ins."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import subprocess
import tarfile
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from simnet.mirror.build import build
from simnet.mirror.releases import default_products
from simnet.pytest_mining import MinerProcess, free_port, http_json, wait_for
from simnet.pytest_mirror import ReleaseMirror
from simnet.translator.config import render_config


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - loopback mirror
        return bytes(response.read())


def _download_verified(mirror: ReleaseMirror, product: str, version: str, dest: Path) -> Path:
    """Download an archive and its checksum file, check it like `sha256sum -c`, return it."""
    url = mirror.url(product, version)
    name = url.rsplit("/", 1)[1]
    data = _get(url)
    sums = _get(mirror.sums_url(product, version)).decode()
    listed = {line.split("  ", 1)[1]: line.split("  ", 1)[0] for line in sums.splitlines()}
    assert listed[name] == hashlib.sha256(data).hexdigest()
    path = dest / name
    path.write_bytes(data)
    return path


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV"}}


def test_real_names_and_url_layout(release_mirror: ReleaseMirror) -> None:
    assert release_mirror.url("bitcoin", "30.2").endswith(
        "/bin/bitcoin-core-30.2/bitcoin-30.2-x86_64-linux-gnu.tar.gz"
    )
    assert release_mirror.url("cln", "26.06.1").endswith(
        "/ElementsProject/lightning/releases/download/v26.06.1/"
        "clightning-v26.06.1-Ubuntu-24.04-amd64.tar.xz"
    )
    assert release_mirror.sums_url("cln", "26.06.1").endswith("/v26.06.1/SHA256SUMS-v26.06.1")
    assert release_mirror.url("sv2-apps", "v0.5.0").endswith(
        "/stratum-mining/sv2-apps/releases/download/v0.5.0/"
        "miner-apps-x86_64-unknown-linux-musl.tar.gz"
    )
    assert release_mirror.url("azcoin", "0.2.2").endswith(
        "/satoshiware/azcoin/releases/download/v0.2.2/azcoin_azcoin-0.2.2-x86_64-linux-gnu.tar.gz"
    )
    # two versions differ, so upgrade and rollback can be told apart by hash
    assert release_mirror.sha256("bitcoin", "30.1") != release_mirror.sha256("bitcoin", "30.2")
    with pytest.raises(urllib.error.HTTPError) as err:
        _get(release_mirror.base_url + "/bin/")
    assert err.value.code == 404


def test_download_verify_unpack_and_run_translator(
    release_mirror: ReleaseMirror, tmp_path: Path
) -> None:
    archive = _download_verified(release_mirror, "sv2-apps", "v0.5.0", tmp_path)
    with tarfile.open(archive) as tar:
        names = tar.getnames()
        tar.extractall(tmp_path / "x", filter="data")
    assert "./translator/translator_sv2" in names
    assert "./translator/translator-config.toml" in names
    launcher = tmp_path / "x" / "translator" / "translator_sv2"
    assert launcher.read_bytes().startswith(b"#!/bin/sh\n")
    result = subprocess.run(
        [str(launcher), "--version"], capture_output=True, text=True, env=_clean_env(), check=True
    )
    assert "SIMULATION" in result.stdout and "v0.5.0" in result.stdout
    # installers copy the single binary to /usr/local/bin: the launcher must still work alone
    alone = tmp_path / "usr-local-bin" / "translator_sv2"
    alone.parent.mkdir()
    shutil.copy2(launcher, alone)
    result = subprocess.run(
        [str(alone), "--version"], capture_output=True, text=True, env=_clean_env(), check=True
    )
    assert "SIMULATION" in result.stdout


def test_bitcoin_and_azcoin_layouts(release_mirror: ReleaseMirror, tmp_path: Path) -> None:
    archive = _download_verified(release_mirror, "bitcoin", "30.2", tmp_path)
    with tarfile.open(archive) as tar:
        names = set(tar.getnames())
        modes = {m.name: m.mode for m in tar.getmembers()}
    assert {"bitcoin-30.2/bin/bitcoind", "bitcoin-30.2/bin/bitcoin-cli"} <= names
    assert "bitcoin-30.2/share/simnet/simnet/__init__.py" in names
    assert modes["bitcoin-30.2/bin/bitcoind"] == 0o755
    archive = _download_verified(release_mirror, "azcoin", "0.2.1", tmp_path)
    with tarfile.open(archive) as tar:
        tar.extractall(tmp_path / "az", filter="data")
    top = tmp_path / "az" / "azcoin-0.2.1"
    assert (top / "bin" / "azcoind").stat().st_mode & 0o111
    rpcauth = subprocess.run(
        ["/usr/bin/python3", str(top / "share" / "rpcauth" / "rpcauth.py"), "satoshi"],
        capture_output=True,
        text=True,
        check=True,
    )
    lines = rpcauth.stdout.splitlines()
    assert lines[1].startswith("rpcauth=satoshi:") and len(lines[-1]) >= 32


def _system_python_has(module: str) -> bool:
    probe = subprocess.run(["/usr/bin/python3", "-c", f"import {module}"], capture_output=True)
    return probe.returncode == 0


@pytest.mark.skipif(
    importlib.util.find_spec("simnet.chain.__main__") is None,
    reason="the chain stand-in (another area) has no `python -m simnet.chain` entry point yet",
)
@pytest.mark.skipif(
    not _system_python_has("aiohttp"),
    reason="launchers run /usr/bin/python3, which needs Debian's python3-aiohttp for the chain "
    "stand-in (present on the test-host image; install it on the controller to run this)",
)
@pytest.mark.parametrize(
    ("product", "version", "binary"),
    [
        ("bitcoin", "30.2", "bitcoin-30.2/bin/bitcoind"),
        ("azcoin", "0.2.2", "azcoin-0.2.2/bin/azcoind"),
    ],
)
def test_chain_daemon_launchers_run(
    release_mirror: ReleaseMirror, tmp_path: Path, product: str, version: str, binary: str
) -> None:
    archive = _download_verified(release_mirror, product, version, tmp_path)
    with tarfile.open(archive) as tar:
        tar.extractall(tmp_path / "x", filter="data")
    result = subprocess.run(
        [str(tmp_path / "x" / binary), "-version"],
        capture_output=True,
        text=True,
        env=_clean_env(),
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert "SIMULATION" in result.stdout + result.stderr


def test_builds_are_reproducible(tmp_path: Path) -> None:
    products = [p for p in default_products(bitcoin_versions=("30.2",)) if p.key == "bitcoin"]
    first = build(tmp_path / "a", products)
    second = build(tmp_path / "b", products)
    assert [a.sha256 for a in first] == [b.sha256 for b in second]


@pytest.mark.skipif(shutil.which("git") is None, reason="git is needed to build and clone")
def test_cl_zmq_plugin_clones_like_reckless_fetches_it(
    release_mirror: ReleaseMirror, tmp_path: Path
) -> None:
    for url in ("/lightningd/plugins", "/lightningd/plugins.git"):
        dest = tmp_path / url.rsplit("/", 1)[1]
        subprocess.run(
            ["git", "clone", "-q", release_mirror.base_url + url, str(dest)],
            check=True,
            capture_output=True,
            env={**_clean_env(), "GIT_TERMINAL_PROMPT": "0"},
        )
        plugin = dest / "cl-zmq" / "cl-zmq.py"
        assert plugin.stat().st_mode & 0o111
        assert "SIMULATION" in plugin.read_text()


@pytest.mark.skipif(
    not _system_python_has("aiohttp"),
    reason="launchers run /usr/bin/python3, which needs Debian's python3-aiohttp for the "
    "translator (present on the test-host image; install it on the controller to run this)",
)
def test_installed_translator_serves_miners(
    release_mirror: ReleaseMirror,
    tmp_path: Path,
    miners_factory: Callable[[str, dict[str, str]], MinerProcess],
) -> None:
    archive = _download_verified(release_mirror, "sv2-apps", "v0.5.0", tmp_path)
    with tarfile.open(archive) as tar:
        tar.extractall(tmp_path / "x", filter="data")
    binary = tmp_path / "usr-local-bin" / "translator_sv2"
    binary.parent.mkdir()
    shutil.copy2(tmp_path / "x" / "translator" / "translator_sv2", binary)
    port, monitoring = free_port(), free_port()
    config = tmp_path / "stratum-bitcoin.toml"
    log = tmp_path / "stratum-bitcoin.log"
    config.write_text(
        render_config(
            upstream_port=free_port(),
            downstream_port=port,
            user_identity="btc-SN42",
            min_hashrate=1e12,
            shares_per_minute=60.0,
            log_file=str(log),
            monitoring_address=f"127.0.0.1:{monitoring}",
        )
    )
    proc = subprocess.Popen(
        [str(binary), "-c", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**_clean_env(), "RUST_LOG": "debug"},
    )
    try:
        url = f"http://127.0.0.1:{monitoring}/api/v1/server/channels"
        wait_for(lambda: http_json(url)["total_extended"] == 0, what="the installed translator")
        miners_factory(f"stratum+tcp://127.0.0.1:{port}", {"hank.rig1": "2T"})
        wait_for(
            lambda: any(c["shares_acknowledged"] for c in http_json(url)["extended_channels"]),
            timeout=40,
            what="an acknowledged share",
        )
        assert 'name: "hank.rig1"' in log.read_text()
        assert http_json(url)["extended_channels"][0]["user_identity"] == "btc-SN42.miner1"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_cl_zmq_source_archive_is_pinnable(release_mirror: ReleaseMirror, tmp_path: Path) -> None:
    """GitHub's archive of the plugins repo at one commit, listed in the mirror's SHA256SUMS."""
    sums = _get(release_mirror.base_url + "/lightningd/plugins/archive/SHA256SUMS").decode()
    digest, name = sums.split()
    assert name.endswith(".tar.gz")
    commit = name.removesuffix(".tar.gz")
    assert len(commit) == 40
    data = _get(f"{release_mirror.base_url}/lightningd/plugins/archive/{name}")
    assert hashlib.sha256(data).hexdigest() == digest
    (tmp_path / name).write_bytes(data)
    with tarfile.open(tmp_path / name) as tar:
        plugin = tar.getmember(f"plugins-{commit}/cl-zmq/cl-zmq.py")
        assert plugin.mode & 0o111
        assert tar.getmember(f"plugins-{commit}/cl-zmq/requirements.txt").isfile()
    if shutil.which("git") is not None:
        refs = _get(release_mirror.base_url + "/lightningd/plugins/info/refs").decode()
        assert commit in refs  # the archive is the clone's commit
