"""FaultMaven agent service: troubleshooting turns, retrieval, redaction, provider failover"""
