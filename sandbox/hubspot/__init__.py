"""The HubSpot CRM v3 emulator (emulator.py) and its pieces."""

from sandbox.hubspot.emulator import HubSpotSandbox

__all__ = ["HubSpotSandbox"]
