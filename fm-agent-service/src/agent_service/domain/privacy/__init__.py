"""Privacy and safety: redaction, fencing of untrusted text, sanitizing answers."""
