"""The vendor-neutral emulator kit; nothing here knows a vendor.

core (HTTP serving, routing, faults, counters, clock), emulator (the :class:`Emulator` base),
oauth and oauth_http (OAuth 2.0 state and its HTTP helpers), limits (rate limiters), seedkit
and seed_words (deterministic seed data). The names below are the ones vendor packages and
tests reach for most; the modules hold the rest.
"""

from sandbox.kit.core import App, Request, Response, RunningSandbox, serve
from sandbox.kit.emulator import Emulator

__all__ = ["App", "Emulator", "Request", "Response", "RunningSandbox", "serve"]
