"""Run a collection module in this process, the way Ansible ends it (JSON on stdout).

The module's arguments go in as Ansible passes them, ``exit_json``/``fail_json`` print the
result (with ``no_log`` values masked) and exit; the printed JSON is the result. The playbook
test (test_playbooks_simnet.py) runs the same modules through ansible-playbook and AnsiballZ.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import sys
from pathlib import Path
from typing import Any

from ansible.module_utils.testing import patch_module_args

ROOT = Path(__file__).resolve().parents[3]
_COLLECTIONS = ROOT / "collections"
if str(_COLLECTIONS) not in sys.path:
    sys.path.insert(0, str(_COLLECTIONS))


def run_module(
    name: str, args: dict[str, Any], *, check: bool = False, diff: bool = False
) -> dict[str, Any]:
    """``satoshiware.scnode.<name>`` with ``args``; returns the module's result."""
    module = importlib.import_module(
        f"ansible_collections.satoshiware.scnode.plugins.modules.{name}"
    )
    printed = io.StringIO()
    with (
        patch_module_args({**args, "_ansible_check_mode": check, "_ansible_diff": diff}),
        contextlib.redirect_stdout(printed),
        contextlib.suppress(SystemExit),
    ):
        module.main()
    result: dict[str, Any] = json.loads(printed.getvalue())
    return result
