"""Hypothesis profiles, chosen with ``HYPOTHESIS_PROFILE`` (default: ``dev``).

``dev``  fast feedback while editing (the default);
``ci``   what ``.ci/run`` uses: enough examples for the model-based machines in
         ``tests/stateful/`` to matter, bounded to a few minutes on 2 cores;
``fuzz`` a long hunt for rare interleavings (see ``docs/testing.md``).

The stateful machines read ``STATEFUL_EXAMPLES`` below through their own
settings; property tests elsewhere keep their explicit ``max_examples``.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

_SLOW_OK = [HealthCheck.too_slow, HealthCheck.data_too_large]

settings.register_profile("dev", deadline=None, suppress_health_check=_SLOW_OK)
settings.register_profile(
    "ci",
    deadline=None,
    suppress_health_check=_SLOW_OK,
    print_blob=True,
    derandomize=False,
)
settings.register_profile(
    "fuzz",
    deadline=None,
    suppress_health_check=_SLOW_OK,
    print_blob=True,
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))
