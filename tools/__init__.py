"""Tools that play the programme's internal systems against a running stack."""
