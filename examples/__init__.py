"""Examples for consumers of the programme's events (docs/consuming.md); no pipeline code."""
