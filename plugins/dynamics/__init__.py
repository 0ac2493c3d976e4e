"""dynamics (in progress)."""
