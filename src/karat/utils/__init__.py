"""Small shared helpers: atomic file writes and provenance records."""
