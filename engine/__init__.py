"""crm-engine: a declarative, YAML-driven connector engine for CRMs."""

from engine.engine import Engine
from engine.errors import CrmError, InputError, SpecError

__all__ = ["CrmError", "Engine", "InputError", "SpecError"]
__version__ = "0.1.0"
