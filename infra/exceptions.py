"""Errors of the infra package: each message says what happened and what to do next."""


class InfraError(Exception):
    """Root of every error raised by infra/."""


class ToolMissingError(InfraError):
    """A tool a local service needs (Java and Maven for Kafka, Go for the schema registry) is missing."""


class BrokerStartError(InfraError):
    """A local broker process exited or did not answer in time."""


class PortBusyError(InfraError):
    """A port the local broker needs is taken by another process."""


class DeliveryError(InfraError):
    """Kafka did not acknowledge events a producer had sent."""


class RegistryStartError(InfraError):
    """The local schema registry could not be built, or did not start and answer in time."""
