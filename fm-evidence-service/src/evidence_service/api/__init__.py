"""HTTP layer of the evidence service."""
