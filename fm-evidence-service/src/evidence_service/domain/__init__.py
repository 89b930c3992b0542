"""Domain code of the evidence service."""
