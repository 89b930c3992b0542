"""The ingestion tasks the worker runs (queues `ingest` and `maintenance`): `documents`
(uploaded documents) and `evidence` (a case's evidence files)."""
