"""conformance.memory: glibc's malloc asked to keep freed memory (where the sweep's chunks and the runner's
checks run)."""

from __future__ import annotations

import platform
import sys

from conformance import memory


def test_freed_memory_is_kept_on_glibc():
    kept = memory.keep_freed_memory()
    assert kept is memory.keep_freed_memory()  # once per process, the same answer
    if sys.platform.startswith("linux"):
        assert kept == (platform.libc_ver()[0] == "glibc")
