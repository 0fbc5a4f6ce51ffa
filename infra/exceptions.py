"""Errors of the infra package: each message says what happened and what to do next."""


class InfraError(Exception):
    """Root of every error raised by infra/."""


class ToolMissing(InfraError):
    """Java or Maven, needed for the local broker, is not installed."""


class BrokerStartFailed(InfraError):
    """A local broker process exited or did not answer in time."""


class PortBusy(InfraError):
    """A port the local broker needs is taken by another process."""


class TopicLayoutError(InfraError):
    """Existing topics do not have the layout the pipeline relies on (e.g. co-partitioning)."""
