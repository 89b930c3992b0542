"""FaultMaven case service: cases, messages, investigation state, reports"""
