"""P1 pendaftaran: registration, deduplication by NIK, the participant master data."""
