"""Build the mirror tree: release archives whose binaries launch the simnet stand-ins.

Each launcher is a `#!/bin/sh` script that runs `/usr/bin/python3 -m simnet.<x>` with
`PYTHONPATH` pointing at the copy of the `simnet` package bundled in the archive
(`<bundle_dir>/`). The same package is also appended to the script as a zip archive and put
first on `PYTHONPATH` (`"$0"`), so a launcher still works after an installer copies the single
file to `/usr/local/bin` the way upstream's install scripts do.

Archives are reproducible: sorted entries, fixed mtimes and owners, gzip without a timestamp.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import lzma
import os
import shutil
import subprocess
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import simnet
from simnet.mirror.releases import Launcher, Product, default_products

MTIME = 1_767_225_600  # 2026-01-01T00:00:00Z, fixed so archives hash the same every build
SIMNET_ROOT = Path(simnet.__file__).resolve().parent


def _package_files() -> list[tuple[str, bytes]]:
    """The simnet package as (relative path under the bundle, content), without test plugins."""
    files = []
    for path in sorted(SIMNET_ROOT.rglob("*")):
        rel = path.relative_to(SIMNET_ROOT.parent)
        if not path.is_file() or "__pycache__" in rel.parts or path.suffix in {".pyc", ".pyo"}:
            continue
        if path.parent == SIMNET_ROOT and path.name.startswith("pytest_"):
            continue
        files.append((rel.as_posix(), path.read_bytes()))
    return files


def _package_zip(files: list[tuple[str, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files:
            info = zipfile.ZipInfo(name, date_time=(2026, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            archive.writestr(info, data, zipfile.ZIP_DEFLATED)
    return buffer.getvalue()


def launcher_script(launcher: Launcher, version: str, bundle_rel: str, package_zip: bytes) -> bytes:
    """The shell launcher with the package zip appended (see the module docstring)."""
    script = f"""#!/bin/sh
# SIMULATION: simnet stand-in for {launcher.program} {version}, not the real program.
here=$(dirname "$(readlink -f "$0")")
SIMNET_PROGRAM={launcher.program}
SIMNET_RELEASE_VERSION={version}
PYTHONPATH="$0:$here/{bundle_rel}${{PYTHONPATH:+:$PYTHONPATH}}"
export SIMNET_PROGRAM SIMNET_RELEASE_VERSION PYTHONPATH
exec /usr/bin/python3 -m {launcher.module} {" ".join(launcher.args)} "$@"
"""
    return script.encode() + package_zip


def _relative(from_dir: str, to_dir: str) -> str:
    up = len([p for p in from_dir.split("/") if p and p != "."])
    return "/".join([".."] * up + [to_dir])


def _tar_bytes(entries: list[tuple[str, bytes, int]], compression: str) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as tar:
        dirs: set[str] = set()
        for name, _, _ in entries:
            parts = name.split("/")[:-1]
            for i in range(1, len(parts) + 1):
                dirs.add("/".join(parts[:i]))
        items: list[tuple[str, bytes | None, int]] = [
            (d, None, 0o755) for d in dirs if d not in {"", "."}
        ]
        items += [(n, d, m) for n, d, m in entries]
        for name, data, mode in sorted(items, key=lambda item: item[0]):
            info = tarfile.TarInfo(name)
            info.mtime = MTIME
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            info.mode = mode
            if data is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    if compression == "xz":
        return lzma.compress(raw.getvalue(), preset=1)
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", mtime=0, filename="") as gz:
        gz.write(raw.getvalue())
    return out.getvalue()


@dataclass
class Asset:
    product: str
    version: str
    url_path: str
    sha256: str
    sums_path: str


def build_archive(product: Product, version: str, files: list[tuple[str, bytes]]) -> bytes:
    top = product.fmt(product.top, version)
    prefix = "./" if top == "." else f"{top}/"
    package_zip = _package_zip(files)
    entries: list[tuple[str, bytes, int]] = []
    for launcher in product.launchers:
        bin_dir = launcher.path.rsplit("/", 1)[0]
        bundle_rel = _relative(bin_dir, product.bundle_dir)
        script = launcher_script(launcher, version, bundle_rel, package_zip)
        entries.append((prefix + launcher.path, script, 0o755))
    for rel, content in product.extra_files.items():
        mode = 0o755 if rel.endswith(".py") else 0o644
        entries.append((prefix + rel, content.encode(), mode))
    for rel, data in files:
        entries.append((f"{prefix}{product.bundle_dir}/{rel}", data, 0o644))
    entries.append(
        (f"{prefix}{product.bundle_dir}/RELEASE_VERSION", f"{version}\n".encode(), 0o644)
    )
    entries.append(
        (
            f"{prefix}README.simnet",
            b"SIMULATION: these programs are simnet stand-ins (test equipment), not the real "
            b"release.\n",
            0o644,
        )
    )
    return _tar_bytes(entries, product.compression)


CL_ZMQ_PLUGIN = """#!/usr/bin/env python3
# SIMULATION: simnet stand-in for the lightningd/plugins cl-zmq plugin. The simnet lightningd
# recognises this file by name (plugin=/plugin-dir=) and publishes the cl-zmq notifications
# itself; it is not the real plugin and does nothing when run by a real lightningd.
import sys

print("simnet cl-zmq stand-in (SIMULATION): load it into the simnet lightningd", file=sys.stderr)
sys.exit(1)
"""


PLUGINS_FILES: tuple[tuple[str, str, int], ...] = (
    ("README.md", "SIMULATION: simnet copy of lightningd/plugins (cl-zmq)\n", 0o644),
    ("cl-zmq/cl-zmq.py", CL_ZMQ_PLUGIN, 0o755),
    ("cl-zmq/requirements.txt", "pyln-client\npyzmq\n", 0o644),
)


def build_plugins_repo(out: Path) -> str | None:
    """A git repository like lightningd/plugins with `cl-zmq/cl-zmq.py`, as `reckless` clones it.

    Served over git's dumb HTTP protocol at `/lightningd/plugins` and `/lightningd/plugins.git`.
    Returns the commit id, or None when no `git` is installed.
    """
    git = shutil.which("git")
    if git is None:
        return None
    stamp = "2026-01-01T00:00:00Z"
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "simnet",
        "GIT_AUTHOR_EMAIL": "simnet@localhost",
        "GIT_COMMITTER_NAME": "simnet",
        "GIT_COMMITTER_EMAIL": "simnet@localhost",
        "GIT_AUTHOR_DATE": stamp,
        "GIT_COMMITTER_DATE": stamp,
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_CONFIG_NOSYSTEM": "1",
    }
    target = out / "lightningd" / "plugins"
    with tempfile.TemporaryDirectory() as work:
        tree = Path(work) / "plugins"
        for rel, content, mode in PLUGINS_FILES:
            path = tree / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content)
            path.chmod(mode)

        def run(*args: str, cwd: Path = tree) -> str:
            done = subprocess.run(
                [git, *args], cwd=cwd, env=env, check=True, capture_output=True, text=True
            )
            return done.stdout.strip()

        run("init", "-q", "-b", "master")
        run("add", "-A")
        run("commit", "-q", "-m", "cl-zmq (simnet SIMULATION)")
        commit = run("rev-parse", "HEAD")
        shutil.rmtree(target, ignore_errors=True)
        target.parent.mkdir(parents=True, exist_ok=True)
        run("clone", "-q", "--bare", str(tree), str(target), cwd=Path(work))
    subprocess.run([git, "update-server-info"], cwd=target, env=env, check=True)
    shutil.rmtree(target.with_name("plugins.git"), ignore_errors=True)
    shutil.copytree(target, target.with_name("plugins.git"))
    return commit


def build_plugins_archive(out: Path, commit: str | None) -> Path:
    """GitHub's source archive of the plugins repository at `commit`, for pinned offline installs.

    Written as `/lightningd/plugins/archive/<commit>.tar.gz` (GitHub's URL) with the top
    directory `plugins-<commit>/`. GitHub publishes no checksum for it; the mirror adds a
    `SHA256SUMS` beside it so roles and the lab can pin it the same way everywhere. Without git
    the commit id is a SHA-1 over the tree's files (stable across builds).
    """
    if commit is None:
        digest = hashlib.sha1(usedforsecurity=False)
        for rel, content, mode in PLUGINS_FILES:
            digest.update(f"{rel}\0{mode:o}\0{content}\0".encode())
        commit = digest.hexdigest()
    entries = [(f"plugins-{commit}/{rel}", c.encode(), m) for rel, c, m in PLUGINS_FILES]
    directory = out / "lightningd" / "plugins" / "archive"
    directory.mkdir(parents=True, exist_ok=True)
    name = f"{commit}.tar.gz"
    data = _tar_bytes(entries, "gz")
    (directory / name).write_bytes(data)
    (directory / "SHA256SUMS").write_text(f"{hashlib.sha256(data).hexdigest()}  {name}\n")
    return directory / name


def build(out: Path, products: list[Product] | None = None) -> list[Asset]:
    """Write the mirror tree under `out`; return the assets with their hashes.

    Also writes `out/manifest.json` (url path, sha256 and checksum file of each asset).
    """
    files = _package_files()
    assets: list[Asset] = []
    for product in products or default_products():
        for version in product.versions:
            directory = out / product.fmt(product.directory, version)
            directory.mkdir(parents=True, exist_ok=True)
            name = product.fmt(product.asset, version)
            data = build_archive(product, version, files)
            (directory / name).write_bytes(data)
            digest = hashlib.sha256(data).hexdigest()
            sums_name = product.fmt(product.sums, version)
            # `sha256sum` format: hash, two spaces, file name
            (directory / sums_name).write_text(f"{digest}  {name}\n")
            rel_dir = directory.relative_to(out).as_posix()
            assets.append(
                Asset(product.key, version, f"/{rel_dir}/{name}", digest, f"/{rel_dir}/{sums_name}")
            )
    build_plugins_archive(out, build_plugins_repo(out))
    manifest = [asset.__dict__ for asset in assets]
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return assets
