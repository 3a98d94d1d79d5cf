"""The ``shipyard`` command line."""

from __future__ import annotations

import typer

from shipyard.cli import server

app = typer.Typer(help="Shipyard: deploy from git to your servers.", no_args_is_help=True,
                  pretty_exceptions_show_locals=False)
app.command()(server.serve)
app.command()(server.migrate)
app.command()(server.worker)
app.add_typer(server.admin, name="admin")

try:  # the API client commands
    from shipyard.cli import client_commands

    client_commands.register(app)
    from shipyard.cli import deploy_commands

    deploy_commands.register(app)
except ImportError:  # pragma: no cover - during bootstrap only
    pass


if __name__ == "__main__":
    app()
