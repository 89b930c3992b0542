"""The proxy hot path: route table, token check, limits, and the upstream HTTP client."""
