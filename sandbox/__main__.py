"""Run an emulator until Ctrl-C: ``python -m sandbox hubspot [--port 8100] [--contacts N ...]``.

Every keyword option of the emulator's constructor becomes a flag (``rate_limit`` ->
``--rate-limit``). Tuples are comma-separated (``--rate-limit 100,10``), ``none`` gives None.
"""

from __future__ import annotations

import argparse
import collections.abc
import inspect
import signal
import sys
import threading
import types
import typing
from collections.abc import Callable
from typing import Any

from sandbox import EMULATORS


def _converter(hint: Any, default: Any) -> Callable[[str], Any]:
    """Parse a flag value into the option's annotated type: `tuple[int, float]` takes exactly
    two comma-separated values, `Iterable[str]` any number; `none` is None."""
    kind = hint
    if typing.get_origin(hint) in (typing.Union, types.UnionType):  # X | None
        [kind] = [k for k in typing.get_args(hint) if k is not type(None)]
    items = list(typing.get_args(kind))
    many = typing.get_origin(kind) in (tuple, collections.abc.Iterable)
    fixed = typing.get_origin(kind) is tuple and Ellipsis not in items
    like = ",".join(map(str, default)) if isinstance(default, tuple) else default

    def convert(text: str) -> Any:
        if text.lower() == "none":
            return None
        try:
            if not many:
                return text.lower() in ("1", "true", "yes", "on") if kind is bool else kind(text)
            parts = text.split(",")
            if fixed and len(parts) != len(items):
                raise ValueError
            return tuple((items[i] if fixed else items[0])(part) for i, part in enumerate(parts))
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not like {like!r}") from None

    return convert


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m sandbox", description=__doc__)
    vendors = parser.add_subparsers(dest="vendor", required=True)
    for name, emulator_class in EMULATORS.items():
        sub = vendors.add_parser(name, help=f"{name} emulator")
        sub.add_argument("--host", default="127.0.0.1")
        sub.add_argument("--port", type=int, default=8100, help="0 picks a free port")
        hints = typing.get_type_hints(emulator_class.__init__)
        for option in inspect.signature(emulator_class.__init__).parameters.values():
            if option.kind is not inspect.Parameter.KEYWORD_ONLY:
                continue
            sub.add_argument(
                "--" + option.name.replace("_", "-"),
                dest=option.name,
                type=_converter(hints[option.name], option.default),
                default=argparse.SUPPRESS,
                help=f"default: {option.default!r}",
            )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = vars(_parser().parse_args(argv))
    vendor, host, port = args.pop("vendor"), args.pop("host"), args.pop("port")
    emulator = EMULATORS[vendor](**args)
    running = emulator.start(host=host, port=port)
    print(f"{vendor} sandbox listening on {running.url}", flush=True)
    for key, value in emulator.describe().items():
        print(f"  {key}: {value}", flush=True)
    print("  control: POST /__sandbox/mutate, GET /__sandbox/truth?stream=contacts", flush=True)
    stop = threading.Event()
    # Ctrl-C even when started in the background (where shells ignore SIGINT); SIGTERM too.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        running.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
