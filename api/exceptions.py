"""Errors of the api package: one root, one line each; messages say what to do, never carry a token."""

from __future__ import annotations


class ApiError(Exception):
    """Root of every error raised by api/."""


class ApiConfigError(ApiError):
    """The API settings (environment) are unusable; the message names the variable to fix."""


class InvalidTokenError(ApiError):
    """A JWT is missing, malformed, badly signed, expired or lacks a required claim (close 4001, HTTP 401)."""


class BadMessageError(ApiError):
    """A client WebSocket message that is not a protocol message; answered with an `error` frame."""


class BroadcastError(ApiError):
    """A test broadcast could not be written to Kafka (HTTP 503)."""


class ClientError(ApiError):
    """Root of the errors of the Python client (`api.client`)."""


class ReconnectFailedError(ClientError):
    """Every connection attempt failed, up to the client's `max_attempts`; the message gives the last cause."""


class ServerRefusedError(ClientError):
    """The server closed with a code that reconnecting cannot fix (4000, 4003, or 4001 without a way to
    get a new token)."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"server closed the connection with {code} ({reason})")
        self.code = code
