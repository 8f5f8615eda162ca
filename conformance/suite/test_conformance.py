"""The conformance matrix: one test per (case, API, dtype, reduction), parametrized by the plugin.

Run with ``pytest --pyargs conformance.suite --framework NAME``.
"""

from conformance.plugin import verdict_outcome


def test_conformance(conformance_result):
    verdict_outcome(conformance_result)


def test_known_divergences_are_current(conformance_plan):
    """Every judged known divergence concerns some planned check (its API, dtype, reduction, quantity); whether it
    explains anything is judged on the whole run's results (conformance.plugin: stale or unexpected pass)."""
    unused = [f"{e.id} ({e.file})" for e in conformance_plan.unused_divergences()]
    assert not unused, f"known divergences that concern no check, to remove: {', '.join(unused)}"
