"""Where the lab keeps its files, and the constants of the image recipe."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_CACHE = Path("/var/cache/scnode-lab")
DEFAULT_STATE = Path("/run/scnode-lab")
# The mirror the machine's own apt uses (overridable for a local apt proxy).
DEFAULT_MIRROR = "http://deb.debian.org/debian"
DEFAULT_SECURITY_MIRROR = "http://deb.debian.org/debian-security"
SUITE = "trixie"
# Bump when the way the image is configured changes: it is part of the image key.
RECIPE_VERSION = "1"
# slirp4netns' built-in DNS forwarder, reachable from the lab through the masquerade.
SLIRP_DNS = "10.0.2.3"


@dataclass(frozen=True)
class LabPaths:
    """The directories of one machine's labs: a cache that survives reboots, state that doesn't."""

    cache: Path
    state_root: Path

    @classmethod
    def from_env(cls) -> LabPaths:
        """Paths from `SCNODE_LAB_CACHE` / `SCNODE_LAB_STATE`, else the defaults."""
        cache = Path(os.environ.get("SCNODE_LAB_CACHE", str(DEFAULT_CACHE)))
        state = Path(os.environ.get("SCNODE_LAB_STATE", str(DEFAULT_STATE)))
        return cls(cache=cache.absolute(), state_root=state.absolute())

    @property
    def ssh_key(self) -> Path:
        """The lab's private key (ed25519, generated once per cache, never in git)."""
        return self.cache / "ssh" / "id_ed25519"

    @property
    def images(self) -> Path:
        return self.cache / "images"

    @property
    def rootfs(self) -> Path:
        return self.cache / "rootfs"

    @property
    def debs(self) -> Path:
        return self.cache / "debs"

    @property
    def labs(self) -> Path:
        """Per-lab writable layers (overlay upper dirs), under the cache's disk, not in RAM."""
        return self.cache / "labs"

    def lab_state(self, name: str) -> Path:
        return self.state_root / name

    def lab_layers(self, name: str) -> Path:
        return self.labs / name


def mirror() -> str:
    """The Debian mirror for the image and the containers' apt sources."""
    return os.environ.get("SCNODE_LAB_MIRROR", DEFAULT_MIRROR)


def security_mirror() -> str:
    return os.environ.get("SCNODE_LAB_SECURITY_MIRROR", DEFAULT_SECURITY_MIRROR)
