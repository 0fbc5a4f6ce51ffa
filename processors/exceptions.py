"""Errors of the processors package: one root, one line each; messages say what to do."""

from __future__ import annotations


class ProcessorError(Exception):
    """Root of every error raised by processors/."""


class StateFormatError(ProcessorError):
    """Stored vendor state bytes could not be decoded (corrupt, or written by a newer format)."""


class PeriodError(ProcessorError, ValueError):
    """A snapshot or prune was asked for a period of fewer than one day."""


class UnsupportedEventError(ProcessorError, TypeError):
    """`apply` was given an object that is not one of the four v1 event records."""


class TransportError(ProcessorError):
    """The worker was configured with a Faust transport it cannot run on."""


class ReplayError(ProcessorError):
    """A replay, export or import cannot run as asked (bad range, missing topic, refused output)."""


class ArchiveError(ReplayError):
    """An Avro archive file cannot be written or read (not an export of vendorpulse events)."""


class TopicLayoutError(ProcessorError):
    """Existing topics do not have the layout the pipeline relies on (e.g. co-partitioning)."""
