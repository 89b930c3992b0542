"""What the gateway's own routes compute: health, capabilities, the merged OpenAPI."""
