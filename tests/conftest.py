"""Test configuration: hypothesis profiles and the size of scale tests.

Profiles (choose with HYPOTHESIS_PROFILE=...): ``dev`` (default locally),
``ci`` (default when CI is set: 200 examples per property, no deadline,
derandomised so a run is reproducible), ``thorough`` (tens of thousands of examples).

Scale tests read ``SLOW``: small by default, full size with FGRAD_SLOW=1.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile("dev", max_examples=100, deadline=None)
settings.register_profile(
    "ci",
    max_examples=200,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "thorough",
    max_examples=20_000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))

SLOW = os.environ.get("FGRAD_SLOW", "") not in ("", "0")
