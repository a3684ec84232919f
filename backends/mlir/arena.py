"""The weights' home on the device: one host memory mapping, backed by huge pages where the OS gives
them, imported into IREE without a copy.

A decode step streams every weight once (85 MB of 2-bit trits for 370M). With 4 KiB pages that walk
misses the TLB every few rows, and the misses cost about as much as the unpacking arithmetic:
measured on a 92 MB packed weight matrix, one thread, 13.5 G trits/s with IREE's own copy of the
weights against 21.5 G trits/s from 2 MiB pages (``benchmarks/RESULTS.md``). So every weight
argument is copied once into an anonymous ``mmap`` advised ``MADV_HUGEPAGE`` (Linux's transparent
huge pages; elsewhere the advice is skipped and plain pages are used), each at a 64-byte aligned
offset, and handed to IREE's CPU device with ``import_host_allocation`` as a buffer of its own.
"""

from __future__ import annotations

import mmap
from collections.abc import Sequence
from typing import Any

import numpy as np

ALIGN_BYTES = 64
HUGE_PAGE_BYTES = 2 << 20


class WeightArena:
    """Host arrays copied into one huge-page mapping; :meth:`device_arrays` imports them into IREE.

    ``arrays``: the host arrays in argument order; ``element_types``: the IREE element type code of
    each (``bf16`` travels as uint16 bits). ``nbytes``: the bytes the weights occupy.
    """

    def __init__(self, arrays: Sequence[np.ndarray]) -> None:
        offsets = []
        end = 0
        for a in arrays:
            end = -(-end // ALIGN_BYTES) * ALIGN_BYTES
            offsets.append(end)
            end += a.nbytes
        self.nbytes = sum(a.nbytes for a in arrays)
        size = max(-(-end // HUGE_PAGE_BYTES) * HUGE_PAGE_BYTES, HUGE_PAGE_BYTES)
        self.map = mmap.mmap(-1, size + HUGE_PAGE_BYTES, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        self.huge_pages = False
        if hasattr(mmap, "MADV_HUGEPAGE"):
            try:
                self.map.madvise(mmap.MADV_HUGEPAGE)
                self.huge_pages = True
            except OSError:  # the kernel does not offer transparent huge pages
                pass
        memory = np.frombuffer(self.map, dtype=np.uint8)
        start = (-memory.ctypes.data) % HUGE_PAGE_BYTES  # the first weight on a page boundary
        self.views = []
        for a, offset in zip(arrays, offsets):
            view = memory[start + offset : start + offset + a.nbytes].view(a.dtype).reshape(a.shape)
            view[...] = a
            self.views.append(view)

    def device_arrays(self, rt: Any, device: Any, element_types: Sequence[int]) -> list[Any]:
        """Each array as an IREE device array over the arena's memory (no copy)."""
        out = []
        for view, element_type in zip(self.views, element_types):
            buffer = device.allocator.import_host_allocation(
                view, memory_type=rt.MemoryType.DEVICE_LOCAL, allowed_usage=rt.BufferUsage.DEFAULT
            )
            buffer_view = rt.HalBufferView(buffer, list(view.shape), element_type)
            out.append(rt.DeviceArray(device, buffer_view, override_dtype=view.dtype))
        return out


__all__ = ["ALIGN_BYTES", "WeightArena"]
