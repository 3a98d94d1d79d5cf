"""Use cases, called alike by the API, the web UI and the CLI."""
