"""pitch_yin (in progress)."""
