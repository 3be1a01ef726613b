"""Operator controls read at run time.

The kill switch is the Prefect Variable `remediation_kill_switch`: set it to `true`
(`prefect variable set remediation_kill_switch true --overwrite`) and no new action is
proposed or launched; set it to `false` (or delete it) to resume.
"""

from __future__ import annotations

from prefect.variables import Variable

KILL_SWITCH = "remediation_kill_switch"


async def kill_switch_engaged() -> bool:
    """Read fresh every time (it is checked again right before every launch)."""
    value = await Variable.aget(KILL_SWITCH, default=False)
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)
