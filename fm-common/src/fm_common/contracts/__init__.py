"""Wire models shared between services, one module per owning service."""
