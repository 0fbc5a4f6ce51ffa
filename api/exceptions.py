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
