"""Shared pytest set-up: load the fixture plugins of the parts of the project that exist.

Each area (simnet chain, Lightning, mining, the test-host tool) ships its fixtures as a plugin
module next to its code, so later tests (apps, roles) use the same handles.
"""

from __future__ import annotations

import importlib.util

_PLUGINS = (
    "simnet.pytest_chain",
    "simnet.pytest_lightning",
    "simnet.pytest_mining",
    "simnet.pytest_mirror",
    "scnode_lab.pytest_plugin",
)

pytest_plugins = [name for name in _PLUGINS if importlib.util.find_spec(name) is not None]
