"""Local infrastructure without Docker: Kafka and mongod from package registries."""
