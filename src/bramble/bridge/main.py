"""bramble-bridge: the bridges' REST API on the head (see bramble.bridge.api)."""

from __future__ import annotations

from typing import Any

from bramble.bridge import config
from bramble.bridge.api import Bridge
from bramble.bridge.web import run_app, service_main


def _serve(settings: Any) -> None:
    run_app(Bridge(settings).app(), settings.listen, settings.port)


def main(argv: list[str] | None = None) -> int:
    return service_main(
        "bramble-bridge",
        str(__doc__),
        config.DEFAULT_PATH,
        load=config.load,
        serve=_serve,
        argv=argv,
    )


if __name__ == "__main__":
    raise SystemExit(main())
