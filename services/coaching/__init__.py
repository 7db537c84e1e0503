"""P2-P4, the hulu: training cohorts, mentoring, and product licensing."""
