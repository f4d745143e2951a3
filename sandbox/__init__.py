"""Local emulators of vendor CRM APIs, served over HTTP on 127.0.0.1.

    from sandbox import start
    with start("hubspot", contacts=1000) as running:
        ...  # running.url, running.emulator (test hooks), running.app (faults, counters)

sandbox/kit/ holds the vendor-neutral pieces; each vendor has a package (sandbox/hubspot/, ...)
whose emulator subclasses :class:`sandbox.kit.Emulator` and is listed in EMULATORS under the
connector's name. The vendor packages load on first use of EMULATORS or start(), so importing
``sandbox.demo`` (which the engine's CLI does to find the `demo` and `sandbox` commands) stays
cheap.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from sandbox.kit import Emulator, RunningSandbox

EMULATORS: dict[str, type[Emulator]]  # built on first access, by __getattr__


@cache
def _emulators() -> dict[str, type[Emulator]]:
    from sandbox.hubspot import HubSpotSandbox
    from sandbox.pipedrive import PipedriveSandbox
    from sandbox.salesforce import SalesforceSandbox
    from sandbox.zoho import ZohoSandbox

    return {
        "hubspot": HubSpotSandbox,
        "pipedrive": PipedriveSandbox,
        "salesforce": SalesforceSandbox,
        "zoho": ZohoSandbox,
    }


def __getattr__(name: str) -> Any:
    if name == "EMULATORS":
        return _emulators()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def start(name: str, *, host: str = "127.0.0.1", port: int = 0, **options: Any) -> RunningSandbox:
    """Build emulator ``name`` with ``options`` and serve it; close the result when done."""
    emulators = _emulators()
    try:
        emulator_class = emulators[name]
    except KeyError:
        raise ValueError(
            f"unknown sandbox {name!r}; known: {', '.join(sorted(emulators))}"
        ) from None
    return emulator_class(**options).start(host=host, port=port)


__all__ = ["EMULATORS", "Emulator", "RunningSandbox", "start"]
