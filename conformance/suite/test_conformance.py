"""The conformance matrix: one test per (case, API, dtype, reduction), parametrized by the plugin.

Run with ``pytest --pyargs conformance.suite --framework NAME``.
"""

from conformance.plugin import verdict_outcome


def test_conformance(conformance_result):
    verdict_outcome(conformance_result)


def test_known_divergences_are_current(conformance_plan):
    """Every known divergence must still name a check of the case files it points at (strict list)."""
    stale = [f"{e.id} ({e.file})" for e in conformance_plan.stale_divergences()]
    assert not stale, f"known divergences that match no check, to remove: {', '.join(stale)}"
