"""The ``pytest11`` entry point of discord-gateway: the ``discord_gateway`` fixture.

The fixture itself is :mod:`discord_gateway.testing.pytest_plugin`. This shim
imports nothing of ``discord_gateway`` until a test asks for the fixture:
pytest loads entry points before coverage starts, and a package imported that
early would lose its module-level lines from a coverage report.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

MARKER = "discord_gateway(**config): ServerConfig fields for the discord_gateway fixture"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", MARKER)


@pytest.fixture
def discord_gateway(request: pytest.FixtureRequest) -> Iterator[Any]:
    """A local Discord gateway for this test (``discord_gateway.testing.pytest_plugin``)."""
    from discord_gateway.testing.pytest_plugin import gateway_for

    yield from gateway_for(request)
