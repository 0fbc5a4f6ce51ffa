"""The FastAPI layer: HTTP snapshots and live WebSocket streams for dashboards."""
