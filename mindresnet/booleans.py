"""How flags and YAML files spell yes, no and nothing: the one list of each."""
from __future__ import annotations

TRUE_WORDS = ("true", "yes", "1", "on")
FALSE_WORDS = ("false", "no", "0", "off")
NONE_WORDS = ("none", "null", "")
