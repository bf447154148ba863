"""The agent contract (tests/test_agents_contract.py) for every registered agent not checked there:
the QAM suite's methods."""

from __future__ import annotations

import pytest

from rql.agents import BUILTIN
from test_agents_contract import CORE, check_contract, data  # noqa: F401  (the module's data fixture)

SUITE = sorted(set(BUILTIN) - set(CORE))


@pytest.mark.parametrize("name", SUITE)
def test_agent_contract(name, data, tmp_path):  # noqa: F811
    check_contract(name, data, tmp_path)
