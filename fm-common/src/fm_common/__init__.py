"""Shared library of the FaultMaven services."""
