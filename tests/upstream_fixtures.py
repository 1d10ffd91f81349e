"""Where the transcripts recorded from the real daemons are (``shared/fixtures``, beside the
checkout — they are data kept outside the repo, see its README).

``SCNODE_FIXTURES`` names the directory explicitly; otherwise the nearest ``shared/fixtures``
above this checkout (``../shared/fixtures`` for the project's layout, wherever the checkout
lives: a CI copy included), else ``/work/shared/fixtures``. Tests that need them skip, saying so,
when none is found.
"""

from __future__ import annotations

import os
from pathlib import Path


def _find() -> Path:
    explicit = os.environ.get("SCNODE_FIXTURES")
    if explicit:
        return Path(explicit)
    for parent in Path(__file__).resolve().parents:
        candidate = parent / "shared" / "fixtures"
        if candidate.is_dir():
            return candidate
    return Path("/work/shared/fixtures")


FIXTURES = _find()
