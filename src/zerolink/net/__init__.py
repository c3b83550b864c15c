"""The only asyncio code: listeners, dialers, connection drivers, link manager."""
