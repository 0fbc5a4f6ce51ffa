"""Running vendorpulse: the local Kafka broker, topics, settings, the simulator and the command line."""
