"""Join and cut the messages of conditions, Events and log lines to a size the API and a reader take (pure)."""

from __future__ import annotations

MESSAGE_LIMIT = 1000  # characters of a condition, log line or Event message we compose
EVENT_MESSAGE_LIMIT = 1024  # the most an Event's message holds


def truncate(text: str, limit: int = MESSAGE_LIMIT) -> str:
    """Return ``text``, or past ``limit`` characters its start ending in "..."."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def summarize(parts: list[str], limit: int = MESSAGE_LIMIT) -> str:
    """Join ``parts`` with "; "; past ``limit`` characters, keep the first ones and say how many are left out."""
    text = "; ".join(parts)
    if len(text) <= limit:
        return text
    room = limit - len(f"; and {len(parts)} more")
    shown, size = 0, -len("; ")
    for part in parts:
        size += len("; ") + len(part)
        if size > room:
            break
        shown += 1
    head = "; ".join(parts[:shown]) if shown else truncate(parts[0], room)
    left = len(parts) - max(shown, 1)
    return f"{head}; and {left} more" if left else head
