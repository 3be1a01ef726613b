"""Operator controls read at run time.

The kill switch is the Prefect Variable `remediation_kill_switch`: set it to `true`
(`prefect variable set remediation_kill_switch true --overwrite`) and no new action is
proposed or launched, and the approval listener answers every pending approval "paused
by operator"; set it to `false` (or `prefect variable unset remediation_kill_switch`)
to resume. A Variable rather than a block field: it is one small value changed by hand
in an emergency, visible and editable in the UI's Variables page and from the CLI, and
read fresh by every process without reloading a block.
"""

from __future__ import annotations

from clients.prefect_runs import PrefectRuns

KILL_SWITCH = "remediation_kill_switch"
_ON = ("1", "true", "yes", "on")


async def kill_switch_engaged() -> bool:
    """Read fresh every time (it is checked again right before every launch)."""
    async with PrefectRuns.open() as runs:
        value = await runs.read_variable(KILL_SWITCH, default=False)
    if isinstance(value, str):
        return value.strip().lower() in _ON
    return bool(value)


async def set_kill_switch(engaged: bool) -> None:
    """Turn the kill switch on or off (the same as the CLI commands above)."""
    async with PrefectRuns.open() as runs:
        if engaged:
            await runs.set_variable(KILL_SWITCH, True)
        else:
            await runs.unset_variable(KILL_SWITCH)
