"""The Salesforce REST API emulator (emulator.py) and its pieces."""

from sandbox.salesforce.emulator import SalesforceSandbox

__all__ = ["SalesforceSandbox"]
