"""The process's memory allocator, set for large arrays.

A freed array of hundreds of MB goes back to the kernel (glibc's malloc serves allocations above its mmap
threshold by mmap, and gives the top of its heap back past its trim threshold), so the next array of that
size is faulted in afresh, page by page. On a virtual machine the first touch of a page is slow: about
3 ns a byte measured on this project's hosts (``np.ones(2**24)`` 0.5 s the first time, 0.14 s in reused
memory), some 40 % of a float32 sweep's time (``benchmarks/sweep_float32.py``, docs/benchmarks.md).
"""

from __future__ import annotations

import ctypes
import sys

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's malloc.h
KEPT_BYTES = 1 << 30

_kept: bool | None = None


def keep_freed_memory() -> bool:
    """Ask glibc's malloc to keep freed memory for reuse rather than return it to the kernel: its mmap and
    trim thresholds raised to ``KEPT_BYTES``. Once per process; True where it took, False where the C
    library is not glibc (nothing changes). Values and results do not depend on it."""
    global _kept
    if _kept is None:
        _kept = False
        if sys.platform.startswith("linux"):
            try:
                mallopt = ctypes.CDLL(None).mallopt
            except (OSError, AttributeError):  # not glibc (musl has no mallopt)
                return False
            mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
            taken = [mallopt(option, KEPT_BYTES) for option in (M_MMAP_THRESHOLD, M_TRIM_THRESHOLD)]  # both, always
            _kept = all(taken)
    return _kept
