"""FaultMaven auth service: users, passwords, tokens, JWKS."""
