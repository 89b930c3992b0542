"""Typed async clients of the FaultMaven services, one module per service."""

from fm_common.clients.base import ServiceClient, create_http_client

__all__ = ["ServiceClient", "create_http_client"]
