"""onsets_flux (in progress)."""
