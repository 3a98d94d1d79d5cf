"""The server-rendered web UI: Jinja2 pages over the same services as the API, small
hand-written JS, and Server-Sent Events for live consoles."""
