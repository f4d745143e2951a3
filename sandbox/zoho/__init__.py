"""The Zoho CRM emulator (emulator.py) and its pieces."""

from sandbox.zoho.emulator import ZohoSandbox

__all__ = ["ZohoSandbox"]
