"""The claims tests share one records folder, so that claims 2, 3, 6 and 7 look at the same TINY run
(benchmarks/studies/claims.py reads a finished run back instead of redoing it)."""

import pytest


@pytest.fixture(scope="session")
def claims_out(tmp_path_factory) -> str:
    return str(tmp_path_factory.mktemp("claims"))
