"""The test-host image: a debootstrapped Debian trixie, cached as tar.zst and unpacked once.

The image is keyed by the package list and the recipe version; it is rebuilt only when one of
them changes. Everything per host (machine-id, SSH host keys, hostname, authorized key) is
written when a container starts, so one image serves every lab.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from scnode_lab import settings
from scnode_lab.process import LabError, run
from scnode_lab.settings import LabPaths

PACKAGES_FILE = "image-packages.txt"
# What debootstrap itself installs (the proven TESTHOSTS.md recipe). The rest of the list is
# installed afterwards by apt inside the new root, whose resolver handles virtual packages and
# alternatives that debootstrap's does not.
BOOTSTRAP_PACKAGES = (
    "systemd", "systemd-sysv", "dbus", "python3", "python3-apt", "openssh-server", "iproute2",
    "iputils-ping", "sudo", "ca-certificates",
)  # fmt: skip
# Timers that would take the dpkg lock at random moments during converges. Disabled (not
# masked) in the image: a role that wants them enables them.
_DISABLED_TIMERS = ("apt-daily.timer", "apt-daily-upgrade.timer")
_TAR_FLAGS = ("--numeric-owner", "--xattrs", "--xattrs-include=*", "--acls")


def parse_packages(text: str) -> list[str]:
    """Package names from the list's text: one a line, `#` comments and blank lines ignored."""
    names: list[str] = []
    for line in text.splitlines():
        name = line.split("#", 1)[0].strip()
        if name and name not in names:
            names.append(name)
    return names


def packages() -> list[str]:
    """The baked package list (scnode_lab/image-packages.txt)."""
    text = resources.files("scnode_lab").joinpath(PACKAGES_FILE).read_text()
    return parse_packages(text)


def image_key(package_names: list[str]) -> str:
    """A short hash of what decides the image's content."""
    material = "\n".join(
        [f"recipe={settings.RECIPE_VERSION}", f"suite={settings.SUITE}", *sorted(package_names)]
    )
    return hashlib.sha256(material.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Image:
    """One built image: its tarball and its unpacked root (the overlay's shared lower dir)."""

    key: str
    tarball: Path
    rootfs: Path


def image_for(paths: LabPaths, package_names: list[str] | None = None) -> Image:
    key = image_key(packages() if package_names is None else package_names)
    return Image(
        key=key,
        tarball=paths.images / f"{settings.SUITE}-{key}.tar.zst",
        rootfs=paths.rootfs / key,
    )


@contextlib.contextmanager
def cache_lock(paths: LabPaths) -> Iterator[None]:
    """Serialise image builds and unpacks between labs started in parallel."""
    paths.cache.mkdir(parents=True, exist_ok=True)
    with open(paths.cache / ".image.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def ensure_image(paths: LabPaths, *, rebuild: bool = False, log: bool = True) -> Image:
    """Build the image if its key has no tarball, and unpack it if it has no root yet."""
    image = image_for(paths)
    with cache_lock(paths):
        if rebuild or not image.tarball.exists():
            _build(paths, image, log=log)
        elif not _complete(image.rootfs):
            _unpack(image)
    return image


def prune(paths: LabPaths, keep: set[str]) -> list[str]:
    """Remove images (tarball and unpacked root) whose key is not in `keep`: older package
    lists, or roots no running lab uses. Returns the removed keys."""
    removed: set[str] = set()
    prefix = f"{settings.SUITE}-"
    with cache_lock(paths):
        for tarball in paths.images.glob(f"{prefix}*.tar.zst"):
            key = tarball.name[len(prefix) : -len(".tar.zst")]
            if key not in keep:
                tarball.unlink()
                removed.add(key)
        for rootfs in paths.rootfs.glob("*") if paths.rootfs.exists() else []:
            if rootfs.is_dir() and _complete(rootfs) and rootfs.name not in keep:
                shutil.rmtree(rootfs)
                removed.add(rootfs.name)
    return sorted(removed)


def _complete(rootfs: Path) -> bool:
    return (rootfs / ".scnode-lab-complete").exists()


def _say(log: bool, message: str) -> None:
    if log:
        print(f"scnode-lab: {message}", file=sys.stderr, flush=True)


def _build(paths: LabPaths, image: Image, *, log: bool) -> None:
    for tool in ("debootstrap", "zstd", "tar"):
        if shutil.which(tool) is None:
            raise LabError(f"{tool} is missing: install it (make deps)")
    paths.images.mkdir(parents=True, exist_ok=True)
    paths.rootfs.mkdir(parents=True, exist_ok=True)
    paths.debs.mkdir(parents=True, exist_ok=True)
    names = packages()
    log_file = paths.images / f"build-{image.key}.log"
    log_file.write_text("")
    started = time.monotonic()
    _say(log, f"building the {settings.SUITE} image {image.key} ({len(names)} packages)")
    with tempfile.TemporaryDirectory(prefix="build-", dir=paths.rootfs) as tmp:
        root = Path(tmp) / "root"
        try:
            _logged(
                log_file,
                [
                    "debootstrap",
                    "--variant=minbase",
                    "--components=main",
                    f"--include={','.join(BOOTSTRAP_PACKAGES)}",
                    f"--cache-dir={paths.debs}",
                    settings.SUITE,
                    str(root),
                    settings.mirror(),
                ],
            )
            _write_sources(root)
            # The package cache is shared with debootstrap's, so a rebuild downloads only
            # what changed; it is bound in, so none of it ends up in the image.
            debs = f"--bind={paths.debs}:/var/cache/apt/archives"
            _logged(log_file, _in_root(root, debs, "apt-get", "update"))
            _logged(
                log_file,
                _in_root(root, debs, "apt-get", "install", "-y", "--no-install-recommends", *names),
            )
        except LabError:
            bootstrap_log = root / "debootstrap" / "debootstrap.log"
            if bootstrap_log.exists():
                with open(log_file, "a") as out:
                    out.write(bootstrap_log.read_text())
            raise
        _configure(root)
        built = time.monotonic()
        partial = image.tarball.with_suffix(".partial")
        run(
            [
                "tar",
                *_TAR_FLAGS,
                "-I",
                "zstd -T0 -3 -q",
                "-C",
                str(root),
                "-cf",
                str(partial),
                ".",
            ],
            timeout=600,
        )
        partial.rename(image.tarball)
        (root / ".scnode-lab-complete").touch()
        if image.rootfs.exists():
            shutil.rmtree(image.rootfs)
        # The freshly built tree is the unpacked image: no need to unpack the tarball again.
        root.rename(image.rootfs)
    size = image.tarball.stat().st_size / 2**20
    _say(
        log,
        f"image {image.key}: debootstrap+configure {built - started:.0f} s, "
        f"archive {time.monotonic() - built:.0f} s, {size:.0f} MiB at {image.tarball}",
    )


def _logged(log_file: Path, argv: list[str]) -> None:
    """Run a build step with its output appended to the build log; fail with the log's tail."""
    with open(log_file, "a") as out:
        out.write(f"\n$ {' '.join(argv)}\n")
        out.flush()
        proc = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, timeout=1800, check=False)
    if proc.returncode != 0:
        tail = "\n".join(log_file.read_text().splitlines()[-15:])
        raise LabError(f"{argv[0]} exited {proc.returncode} (log: {log_file}):\n{tail}")


def _in_root(root: Path, bind: str, *argv: str) -> list[str]:
    """A command run inside the new root: systemd-nspawn gives it /proc, /dev and the host's
    network and DNS for the downloads (no services start: systemd is not running there)."""
    return [
        "systemd-nspawn",
        "-q",
        "-D", str(root),
        "--register=no",
        "--keep-unit",
        "--console=pipe",
        "--resolv-conf=replace-host",
        "--timezone=off",
        "--link-journal=no",
        "-E", "DEBIAN_FRONTEND=noninteractive",
        bind,
        *argv,
    ]  # fmt: skip


def _unpack(image: Image) -> None:
    partial = image.rootfs.with_name(image.rootfs.name + ".partial")
    if partial.exists():
        shutil.rmtree(partial)
    partial.mkdir(parents=True)
    run(
        ["tar", *_TAR_FLAGS, "-I", "zstd", "-xpf", str(image.tarball), "-C", str(partial)],
        timeout=600,
    )
    (partial / ".scnode-lab-complete").touch()
    if image.rootfs.exists():
        shutil.rmtree(image.rootfs)
    partial.rename(image.rootfs)


def _write(path: Path, text: str, mode: int = 0o644) -> None:
    if path.is_symlink() or path.exists():
        path.unlink()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)


def _write_sources(root: Path) -> None:
    suite = settings.SUITE
    (root / "etc/apt/sources.list").unlink(missing_ok=True)
    _write(
        root / "etc/apt/sources.list.d/debian.sources",
        f"Types: deb\nURIs: {settings.mirror()}\nSuites: {suite} {suite}-updates\n"
        "Components: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\n"
        f"Types: deb\nURIs: {settings.security_mirror()}\nSuites: {suite}-security\n"
        "Components: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n",
    )


def _configure(root: Path) -> None:
    """Make the installed tree a bootable, host-neutral container image."""
    _write(root / "etc/resolv.conf", f"nameserver {settings.SLIRP_DNS}\n")
    # Per-container identity is written at start; an empty machine-id would otherwise be
    # filled by systemd-firstboot, which prompts on the console.
    for key in (root / "etc/ssh").glob("ssh_host_*"):
        key.unlink()
    _write(root / "etc/machine-id", "", 0o444)
    (root / "var/lib/dbus/machine-id").unlink(missing_ok=True)
    (root / "etc/hostname").unlink(missing_ok=True)
    mask = root / "etc/systemd/system/systemd-firstboot.service"
    mask.unlink(missing_ok=True)
    mask.symlink_to("/dev/null")
    for timer in _DISABLED_TIMERS:
        (root / "etc/systemd/system/timers.target.wants" / timer).unlink(missing_ok=True)
    for deb in (root / "var/cache/apt/archives").glob("*.deb"):
        deb.unlink()
