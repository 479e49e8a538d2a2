"""memory.limit_memory: the process-wide limits ``servicelink run`` sets before its threads start."""

from __future__ import annotations

import asyncio.sslproto

from servicelink.memory import TLS_READ_BUFFER, limit_memory


def test_tls_connections_read_into_a_record_sized_buffer() -> None:
    limit_memory()
    assert asyncio.sslproto.SSLProtocol.max_size == TLS_READ_BUFFER == 16 * 1024
