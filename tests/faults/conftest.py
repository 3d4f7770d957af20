"""Fixtures of the fault tests: a ``Rig`` (Redis under test, ledger, real processes)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import BINARIES
from tests.faults.rig import Rig


@pytest.fixture(params=[BINARIES[0]], ids=[BINARIES[0][0]])
def rig(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Rig]:
    """One server binary (Redis 7 when on PATH): these tests are about faults, not versions;
    the error replies they inject are the same on Valkey 8."""
    rig = Rig(request.param[1], tmp_path)
    yield rig
    rig.close()
