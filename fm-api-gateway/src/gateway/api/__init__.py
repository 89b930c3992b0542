"""The gateway's own routes (everything that is not proxied)."""
