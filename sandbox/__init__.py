"""Local emulators of vendor CRM APIs, served over HTTP on 127.0.0.1.

    from sandbox import start
    with start("hubspot", contacts=1000) as running:
        ...  # running.url, running.emulator (test hooks), running.app (faults, counters)

Each vendor's emulator subclasses :class:`sandbox.emulator.Emulator` and is listed in
EMULATORS under the connector's name.
"""

from __future__ import annotations

from typing import Any

from sandbox.core import RunningSandbox
from sandbox.emulator import Emulator
from sandbox.hubspot import HubSpotSandbox
from sandbox.pipedrive import PipedriveSandbox
from sandbox.salesforce import SalesforceSandbox
from sandbox.zoho import ZohoSandbox

EMULATORS: dict[str, type[Emulator]] = {
    "hubspot": HubSpotSandbox,
    "pipedrive": PipedriveSandbox,
    "salesforce": SalesforceSandbox,
    "zoho": ZohoSandbox,
}


def start(name: str, *, host: str = "127.0.0.1", port: int = 0, **options: Any) -> RunningSandbox:
    """Build emulator ``name`` with ``options`` and serve it; close the result when done."""
    try:
        emulator_class = EMULATORS[name]
    except KeyError:
        raise ValueError(
            f"unknown sandbox {name!r}; known: {', '.join(sorted(EMULATORS))}"
        ) from None
    return emulator_class(**options).start(host=host, port=port)


__all__ = ["EMULATORS", "Emulator", "RunningSandbox", "start"]
