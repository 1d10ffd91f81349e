"""The stand-in's own tests test the stand-in, also under `make test-real`: the real-daemon
variables (tests/daemons.py) apply only to modules that say `USES_REAL_DAEMONS = True`."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from simnet.pytest_chain import REAL_ENV


@pytest.fixture(autouse=True, scope="module")
def _stand_in_unless_the_module_asks(request: pytest.FixtureRequest) -> Iterator[None]:
    if getattr(request.module, "USES_REAL_DAEMONS", False):
        yield
        return
    with pytest.MonkeyPatch.context() as patch:
        for name in REAL_ENV.values():
            patch.delenv(name, raising=False)
        yield
