"""FaultMaven session service: user sessions in Redis with TTL, heartbeat and resume."""
