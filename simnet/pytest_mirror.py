"""Pytest fixture `release_mirror`: the simnet release mirror built once per session and served
on 127.0.0.1 (a free port). Yields a `ReleaseMirror` with the base URL, the tree and the assets'
hashes, e.g. `release_mirror.url("bitcoin", "30.2")`."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from simnet.mirror.build import Asset, build
from simnet.mirror.serve import make_server


@dataclass
class ReleaseMirror:
    base_url: str
    root: Path
    assets: list[Asset]

    def asset(self, product: str, version: str) -> Asset:
        for asset in self.assets:
            if asset.product == product and asset.version == version:
                return asset
        raise KeyError((product, version))

    def url(self, product: str, version: str) -> str:
        return self.base_url + self.asset(product, version).url_path

    def sums_url(self, product: str, version: str) -> str:
        return self.base_url + self.asset(product, version).sums_path

    def sha256(self, product: str, version: str) -> str:
        return self.asset(product, version).sha256


@pytest.fixture(scope="session")
def release_mirror(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReleaseMirror]:
    root = tmp_path_factory.mktemp("release-mirror")
    assets = build(root)
    server = make_server(root, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, name="release-mirror", daemon=True)
    thread.start()
    host, port = server.server_address[:2]
    try:
        yield ReleaseMirror(f"http://{host!s}:{port}", root, assets)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
