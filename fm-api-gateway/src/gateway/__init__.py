"""FaultMaven API gateway: routing, token check, rate limits, CORS"""
