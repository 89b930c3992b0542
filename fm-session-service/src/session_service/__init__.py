"""FaultMaven session service: user sessions in Redis"""
