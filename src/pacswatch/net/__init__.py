"""The asyncio edge: the only place that touches sockets and maps OS errors to statuses."""
