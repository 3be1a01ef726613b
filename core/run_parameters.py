"""How a run's parameters combine with the ones its deployment declares.

Prefect replaces a deployment's parameter wholesale when a caller passes the same one,
so a caller that passes `settings: {deployment: ...}` silently drops every setting the
deployment declared (its settle time, poll intervals, UI link). The rule here: mapping
parameters merge field by field, the caller's fields over the deployment's; anything
else the caller passes replaces the declared value only when it says something (None
keeps what the deployment declares).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def merge_parameters(declared: Mapping[str, Any], passed: Mapping[str, Any]) -> dict[str, Any]:
    """The parameters a run should get: `declared` (the deployment's) with `passed` over
    them, mappings merged one field at a time."""
    merged = dict(declared)
    for name, value in passed.items():
        base = merged.get(name)
        if isinstance(value, Mapping) and isinstance(base, Mapping):
            merged[name] = {**base, **value}
        elif value is not None or name not in merged:
            merged[name] = value
    return merged
