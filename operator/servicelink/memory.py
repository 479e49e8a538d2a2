"""Process-wide memory limits of ``servicelink run``, each with the measurement behind it (no I/O).

Measured beside Reloader (docs/explanation/performance.md) at 1,000 Services and 200
consumers in 5 namespaces: peak RSS 98.5 MB before these limits and kopf's two
settings in ``handlers.configure_kopf``, 80 MB after.
"""

from __future__ import annotations

import asyncio.sslproto
import ctypes

# A TLS record carries at most 16 KiB of data, so a larger read buffer only saves loop turns.
TLS_READ_BUFFER = 16 * 1024
MALLOC_ARENAS = 2
_M_ARENA_MAX = -8  # glibc's malloc.h


def limit_memory() -> None:
    """Shrink asyncio's TLS read buffers and cap glibc's malloc arenas.

    Call it before any thread or connection starts: an arena or a buffer made
    before keeps its size.
    """
    # asyncio gives every TLS connection a 256 KiB read buffer, zero-filled, so all of it
    # is resident. kopf holds a watch connection per kind and namespace (32 at 5 namespaces):
    # 8 MB of buffers. 16 KiB measured 8 MB less, 64 KiB 6 MB less.
    asyncio.sslproto.SSLProtocol.max_size = TLS_READ_BUFFER
    # glibc gives each thread that allocates an arena of its own, up to 8 per core, and the
    # memory freed in one arena serves only its threads. Two arenas: 2-3 MB less.
    mallopt = getattr(ctypes.CDLL(None), "mallopt", None)
    if mallopt is not None:  # glibc; other C libraries have their own allocators
        mallopt(_M_ARENA_MAX, MALLOC_ARENAS)
