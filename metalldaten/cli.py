"""The ``metalldaten`` command line. It only assembles the sub-commands of each part."""

from __future__ import annotations

import logging

import typer

from api.cli import app as tokens_app
from core.cli import CliGroup
from gateway.cli import app as gateway_app
from metalldaten.broker_cli import app as broker_app
from metalldaten.demo.cli import demo
from metalldaten.demo.simulate import simulate_command
from metalldaten.hub import app as hub_app

app = typer.Typer(
    cls=CliGroup, no_args_is_help=True, help="Metall+Daten data-sharing hub: gateways, hub, analytics API."
)
app.add_typer(gateway_app, name="gateway", help="Edge gateway: read machines, pseudonymise, send to the hub.")
app.add_typer(hub_app, name="hub", help="Hub: ingestor and analytics API.")
app.add_typer(broker_app, name="broker", help="Trustee: broker certificates and the member register.")
app.add_typer(tokens_app, name="tokens", help="Analytics API tokens.")
app.command("demo")(demo)
app.command("simulate")(simulate_command)


@app.callback()
def _main(verbose: bool = typer.Option(False, "--verbose", "-v", help="Log at DEBUG level.")) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not verbose:
        # Third-party libraries narrate every connection at INFO; keep their warnings and errors.
        for noisy in ("asyncua", "amqtt", "httpx", "transitions", "uvicorn.access"):
            logging.getLogger(noisy).setLevel(logging.WARNING)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
