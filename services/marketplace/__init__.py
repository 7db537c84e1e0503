"""P5-P7, the hilir: curation and listing, export facilitation, sales reports, financing."""
