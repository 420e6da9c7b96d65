"""`pullctl state`: what pullctl keeps between runs."""

from __future__ import annotations

import typer

app = typer.Typer(
    help="State kept between runs: incremental marks and the key that encrypts stored credentials.",
    no_args_is_help=True,
)


@app.command("keygen")
def keygen() -> None:
    """Print a new PULLCTL_STATE_KEY (it encrypts rotated refresh tokens kept in the store).

    Example: pullctl state keygen  # then store it as a Kubernetes Secret (docs/kubernetes.md)
    """
    from pullctl.pipeline.state_key import new_key

    typer.echo(new_key())
