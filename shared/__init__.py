"""The small kernel every Jakpreneur service uses. It holds no business rules."""
