"""The ``shipyard`` command: server administration and an API client."""
