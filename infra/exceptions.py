"""Errors of the infra package: each message says what happened and what to do next."""


class InfraError(Exception):
    """Root of every error raised by infra/."""


class ToolMissingError(InfraError):
    """Java or Maven, needed for the local broker, is not installed."""


class BrokerStartError(InfraError):
    """A local broker process exited or did not answer in time."""


class PortBusyError(InfraError):
    """A port the local broker needs is taken by another process."""


class TopicLayoutError(InfraError):
    """Existing topics do not have the layout the pipeline relies on (e.g. co-partitioning)."""


class DeliveryError(InfraError):
    """Kafka did not acknowledge events a producer had sent."""
