"""The project's own tests run the checks in their own process (CONFORMANCE_ISOLATION=off), as they test
the suite's logic on fixed subjects, not a framework's crashes: a worker process per run would cost each
run its startup. tests/test_robustness.py and tests/test_outputs.py's fault injection turn isolation back
on, since that is what they test."""

import pytest

from conformance import reference as reference_module


@pytest.fixture(autouse=True)
def checks_in_process(monkeypatch):
    monkeypatch.setenv("CONFORMANCE_ISOLATION", "off")


@pytest.fixture
def computed(monkeypatch) -> list:
    """Counts the fast path's evaluations: a hit computes nothing."""
    calls = []
    original = reference_module._fast

    def counting(*args, **kwargs):
        calls.append(args[:4])
        return original(*args, **kwargs)

    monkeypatch.setattr(reference_module, "_fast", counting)
    return calls
