"""FaultMaven evidence service: uploaded files, per-case dedupe, metadata, download."""
