"""`krun`: the launcher's command line; the only module that reads `os.environ`.

`krun explain` runs discovery and prints what it decided (see `krun.explain`). `krun
identity` discovers, writes the istio-token and the certificate, and keeps them fresh until
SIGTERM (`--once`: exit after writing). Launching a workload arrives in later issues.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping, Sequence

from krun import __version__


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="krun", description="Run a workload in the mesh (launcher under construction)."
    )
    parser.add_argument("--version", action="version", version=f"krun {__version__}")
    commands = parser.add_subparsers(dest="command")
    commands.add_parser(
        "explain",
        help="run discovery without changing anything; print every decision as JSON",
    )
    identity = commands.add_parser(
        "identity",
        help="discover, write the istio-token and certificate, keep them fresh until SIGTERM",
    )
    identity.add_argument("--once", action="store_true", help="exit once the files are written")
    args = parser.parse_args(argv)
    if args.command == "explain":
        return _explain(os.environ if environ is None else environ)
    if args.command == "identity":
        return _identity(os.environ if environ is None else environ, once=args.once)
    parser.print_help(sys.stderr)
    print("\nkrun: no launch mode is implemented yet; see the issue tracker.", file=sys.stderr)
    return 2


def _explain(environ: Mapping[str, str]) -> int:
    from krun.errors import ConfigError  # noqa: PLC0415 - keep `krun --version` instant
    from krun.explain import explain, sentence  # noqa: PLC0415

    document, failure = explain(environ)
    print(json.dumps(document, indent=2))
    if failure is None:
        return 0
    print(sentence(document["failed_step"], failure), file=sys.stderr)
    return 2 if isinstance(failure, ConfigError) else 1


def _identity(environ: Mapping[str, str], *, once: bool) -> int:
    import signal  # noqa: PLC0415
    import threading  # noqa: PLC0415

    from krun import log  # noqa: PLC0415
    from krun.config import Settings  # noqa: PLC0415
    from krun.errors import ConfigError, KrunError  # noqa: PLC0415
    from krun.prepare import prepare  # noqa: PLC0415

    try:
        settings = Settings.from_env(environ)
    except ConfigError as error:
        print(f"krun: {error}", file=sys.stderr)
        return 2
    log.setup(json_format=settings.log_format == "json", debug=settings.mesh_debug)
    try:
        prepared = prepare(settings, background=not once)
    except KrunError as error:
        log.LOGGER.error("failed", extra={"fields": {"error": str(error)}})
        print(f"krun: {error}", file=sys.stderr)
        return 1
    if once:
        return 0
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    stop.wait()
    prepared.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
