"""The REST API under /api/v1: parse, call a service, format. OpenAPI at /docs."""
