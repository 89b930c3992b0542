"""Routes of the knowledge service."""
