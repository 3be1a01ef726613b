"""Remediation actions on a simulated host, as pure functions of its state.

These are what the sandbox's Ansible playbooks call through
`POST /_control/hosts/{host}/actions/{action}`. Each returns the new state and what to
answer; the fleet applies the state and writes the journal lines (`unit_journal`).

Processes and the host: freeing a hungry process gives its excess CPU and memory back
to the host (`cpu_busy_pct` drops, `mem_available_pct` rises), so the host-level check a
verification step re-runs sees the fix, not only the per-process one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError

from sandbox.fleet_state import (
    FreeDiskParams,
    HostState,
    NoParams,
    Process,
    ProcessParams,
    RestartUnitParams,
    TimeSyncParams,
)


class ActionError(ValueError):
    """An unknown action, or parameters that do not fit it (HTTP 400)."""


@dataclass(frozen=True)
class Outcome:
    state: HostState
    changed: bool
    result: str
    ok: bool = True
    restarted_units: frozenset[str] = field(default_factory=frozenset)


def _give_back(state: HostState, cores: float, rss: int) -> dict[str, Any]:
    """The host-level fields after a process stops using `cores` CPU and `rss` memory."""
    busy = max(0.0, state.cpu_busy_pct - 100.0 * cores / state.cpus)
    avail = min(100.0, state.mem_available_pct + 100.0 * rss / state.mem_total_bytes)
    return {"cpu_busy_pct": busy, "mem_available_pct": avail}


def _calmed(p: Process) -> Process:
    return p.model_copy(
        update={"cpu_cores": p.baseline_cores, "rss_bytes": min(p.rss_bytes, p.baseline_rss_bytes)}
    )


def restart_unit(state: HostState, params: RestartUnitParams) -> Outcome:
    unit = state.units.get(params.unit)
    if unit is None:
        raise ActionError(f"unit {params.unit!r} not found on this host")
    new = "active" if unit.restart_fixes else "failed"
    units = {**state.units, params.unit: unit.model_copy(update={"state": new})}
    result = (
        f"{params.unit} restarted and is active"
        if unit.restart_fixes
        else f"{params.unit} failed to start again after restart"
    )
    return Outcome(
        state.model_copy(update={"units": units}),
        changed=True,
        result=result,
        ok=unit.restart_fixes,
        restarted_units=frozenset({params.unit}),
    )


def restart_time_sync(state: HostState, params: TimeSyncParams) -> Outcome:
    """Restart the time-sync daemon: it steps the clock back in sync (unless the host's
    clock says a restart does not fix it, e.g. no reachable time source)."""
    clock = state.clock
    if params.unit != clock.sync_unit:
        raise ActionError(f"unit {params.unit!r} not found on this host")
    if not clock.restart_fixes:
        return Outcome(
            state, True, f"{params.unit} restarted; the clock is still not synchronised", ok=False
        )
    synced = clock.model_copy(update={"synced": True, "offset_seconds": 0.0})
    return Outcome(
        state.model_copy(update={"clock": synced}),
        changed=True,
        result=f"{params.unit} restarted; clock synchronised (offset was "
        f"{clock.offset_seconds:g} s)",
    )


def free_disk(state: HostState, params: FreeDiskParams) -> Outcome:
    mount = state.mounts.get(params.mountpoint)
    if mount is None:
        raise ActionError(f"mountpoint {params.mountpoint!r} not found on this host")
    freed = min(mount.used_pct, mount.freeable_pct)
    if freed <= 0:
        return Outcome(
            state, False, f"nothing to free on {params.mountpoint} ({mount.used_pct:g}% used)"
        )
    used = mount.used_pct - freed
    # What was freed is gone: a second run finds nothing more (idempotent, like logrotate).
    new_mount = mount.model_copy(update={"used_pct": used, "freeable_pct": 0.0})
    mounts = {**state.mounts, params.mountpoint: new_mount}
    return Outcome(
        state.model_copy(update={"mounts": mounts}),
        changed=True,
        result=f"freed {freed:g}% on {params.mountpoint}, now {used:g}% used",
    )


def restart_process(state: HostState, params: ProcessParams) -> Outcome:
    proc = state.processes.get(params.process)
    if proc is None:
        raise ActionError(f"process group {params.process!r} not found on this host")
    calm = _calmed(proc)
    update = _give_back(state, proc.cpu_cores - calm.cpu_cores, proc.rss_bytes - calm.rss_bytes)
    update["processes"] = {**state.processes, params.process: calm}
    return Outcome(
        state.model_copy(update=update),
        changed=True,
        result=(
            f"{params.process} restarted: {proc.cpu_cores:g} -> {calm.cpu_cores:g} cores, "
            f"{proc.rss_bytes} -> {calm.rss_bytes} bytes resident"
        ),
    )


def kill_process(state: HostState, params: ProcessParams) -> Outcome:
    proc = state.processes.get(params.process)
    if proc is None:  # already gone is the goal reached, as with `pkill`'s idempotent use
        return Outcome(state, False, f"no process group {params.process!r} running")
    update = _give_back(state, proc.cpu_cores, proc.rss_bytes)
    update["processes"] = {k: v for k, v in state.processes.items() if k != params.process}
    return Outcome(state.model_copy(update=update), changed=True, result=f"killed {params.process}")


def reboot(state: HostState, params: NoParams) -> Outcome:
    units, restarted = {}, set()
    for name, unit in state.units.items():
        if unit.state != "active":
            restarted.add(name)
        # A unit that a restart does not fix fails again at boot.
        new = "active" if unit.restart_fixes or unit.state == "active" else "failed"
        units[name] = unit.model_copy(update={"state": new})
    processes = {name: _calmed(p) for name, p in state.processes.items()}
    cores = sum(p.cpu_cores for p in state.processes.values()) - sum(
        p.cpu_cores for p in processes.values()
    )
    rss = sum(p.rss_bytes for p in state.processes.values()) - sum(
        p.rss_bytes for p in processes.values()
    )
    update = _give_back(state, cores, rss)
    update.update(units=units, processes=processes)
    failed = sorted(n for n, u in units.items() if u.state != "active")
    result = "rebooted; all units active" if not failed else f"rebooted; still failed: {failed}"
    return Outcome(
        state.model_copy(update=update),
        changed=True,
        result=result,
        ok=not failed,
        restarted_units=frozenset(restarted),
    )


_Action = tuple[type[BaseModel], Callable[[HostState, Any], Outcome]]
ACTIONS: dict[str, _Action] = {
    "restart_unit": (RestartUnitParams, restart_unit),
    "restart_time_sync": (TimeSyncParams, restart_time_sync),
    "free_disk": (FreeDiskParams, free_disk),
    "restart_process": (ProcessParams, restart_process),
    "kill_process": (ProcessParams, kill_process),
    "reboot": (NoParams, reboot),
}


def run_action(state: HostState, action: str, params: Mapping[str, Any] | None) -> Outcome:
    """Validate `params` for `action` and run it; `ActionError` names what is wrong."""
    if action not in ACTIONS:
        raise ActionError(f"unknown action {action!r}; known: {sorted(ACTIONS)}")
    model, func = ACTIONS[action]
    try:
        parsed = model.model_validate(dict(params or {}))
    except (ValidationError, TypeError, ValueError) as exc:
        raise ActionError(f"bad parameters for {action}: {exc}") from exc
    return func(state, parsed)
