"""Coverage's timer: the daily check for hours without enough supporters on duty."""

from __future__ import annotations

COVERAGE_CHECK = "coverage_check"
