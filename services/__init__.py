"""The Jakpreneur services; each owns its database and talks to the others only via Kafka."""
