"""Stopping background tasks reliably."""

from __future__ import annotations

import asyncio


async def cancel_and_wait(task: asyncio.Task[None]) -> None:
    """Cancel `task` and wait until it has ended, cancelling again if a cancellation was lost.

    On Python 3.11, `asyncio.wait_for` can swallow a cancellation that arrives just as its
    inner operation fails (a refused connect: cpython gh-86296); the task then goes on to its
    next `sleep` and a plain ``task.cancel(); await task`` waits forever.
    """
    while not task.done():
        task.cancel()
        await asyncio.wait([task], timeout=0.5)
    if not task.cancelled() and task.exception() is not None:
        raise task.exception()  # type: ignore[misc]
