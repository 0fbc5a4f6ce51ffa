"""The FastAPI layer: HTTP snapshots and live WebSocket streams for dashboards, and the Python client
of those streams (`from api import VendorPulseClient`, see `api.client`)."""

from api.client import ConnectionState, Message, VendorPulseClient
from api.client_policy import Backoff
from api.exceptions import ClientError, ReconnectFailedError, ServerRefusedError

__all__ = [
    "Backoff",
    "ClientError",
    "ConnectionState",
    "Message",
    "ReconnectFailedError",
    "ServerRefusedError",
    "VendorPulseClient",
]
