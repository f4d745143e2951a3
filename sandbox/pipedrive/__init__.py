"""The Pipedrive API v1 + v2 emulator (emulator.py) and its pieces."""

from sandbox.pipedrive.emulator import PipedriveSandbox

__all__ = ["PipedriveSandbox"]
