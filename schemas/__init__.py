"""Event contract: Avro schemas (`*.avsc`), the event records and the single-object codec."""
