"""Sans-I/O protocol state machines: no asyncio, socket, ssl or clock imports."""
