"""The simulated host's state: what a scenario sets and a remediation action changes.

A `HostState` is frozen: the fleet replaces it as a whole (so every change goes through
the counter bookkeeping in `fleet_metrics`), from a JSON merge patch (RFC 7386) of its
JSON form. Unknown fields are rejected, so a typo in a scenario fails loudly instead of
silently doing nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

GiB = 1024**3
MiB = 1024**2

UnitStateName = Literal["activating", "active", "deactivating", "failed", "inactive"]
UNIT_STATES: tuple[str, ...] = ("activating", "active", "deactivating", "failed", "inactive")


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Mount(_Model):
    """One mounted filesystem; `freeable_pct` is what a `free_disk` action can reclaim."""

    device: str
    fstype: str = "ext4"
    size_bytes: int = Field(default=50 * GiB, gt=0)
    used_pct: float = Field(default=40.0, ge=0, le=100)
    freeable_pct: float = Field(default=30.0, ge=0, le=100)


class Unit(_Model):
    """A systemd unit; `restart_fixes=False` makes a restart fail again (a real breakage)."""

    state: UnitStateName = "active"
    type: str = "simple"
    restart_fixes: bool = True


class Process(_Model):
    """A process-exporter name group; the baselines are what a restart brings it back to."""

    cpu_cores: float = Field(default=0.01, ge=0)
    rss_bytes: int = Field(default=64 * MiB, ge=0)
    baseline_cores: float = Field(default=0.01, ge=0)
    baseline_rss_bytes: int = Field(default=64 * MiB, ge=0)


class Clock(_Model):
    """The host clock as node_exporter's timex collector sees it. A drifting clock is
    `{"synced": false, "offset_seconds": 2.5}`; restarting `sync_unit` (the time-sync
    daemon) brings it back in sync unless `restart_fixes` is False."""

    synced: bool = True
    offset_seconds: float = 0.0
    sync_unit: str = "systemd-timesyncd.service"
    restart_fixes: bool = True


def _default_mounts() -> dict[str, Mount]:
    return {
        "/": Mount(device="/dev/vda1", fstype="ext4", size_bytes=50 * GiB, used_pct=40.0),
        "/var": Mount(device="/dev/vdb1", fstype="xfs", size_bytes=100 * GiB, used_pct=30.0),
        # A pseudo filesystem, so checks can prove they exclude tmpfs.
        "/run": Mount(device="tmpfs", fstype="tmpfs", size_bytes=800 * MiB, used_pct=1.0),
    }


def _default_units() -> dict[str, Unit]:
    return {name: Unit() for name in ("nginx.service", "ssh.service", "cron.service")}


def _default_processes() -> dict[str, Process]:
    return {
        "systemd": Process(cpu_cores=0.005, rss_bytes=12 * MiB, baseline_cores=0.005),
        "sshd": Process(cpu_cores=0.002, rss_bytes=8 * MiB, baseline_cores=0.002),
        "nginx": Process(cpu_cores=0.02, rss_bytes=48 * MiB, baseline_cores=0.02),
    }


class HostState(_Model):
    """Everything the exporter shows for one host.

    CPU: `cpu_busy_pct` is the non-idle, non-iowait share of every CPU and `iowait_pct`
    the iowait share, so `100 - idle%` reads `cpu_busy_pct + iowait_pct`. Process CPU is
    reported separately (process-exporter); actions that calm a process subtract its
    excess from `cpu_busy_pct` so the host-level check sees the fix too.
    """

    cpus: int = Field(default=2, ge=1, le=512)
    cpu_busy_pct: float = Field(default=10.0, ge=0, le=100)
    iowait_pct: float = Field(default=0.0, ge=0, le=100)
    mem_total_bytes: int = Field(default=8 * GiB, gt=0)
    mem_available_pct: float = Field(default=75.0, ge=0, le=100)
    mounts: dict[str, Mount] = Field(default_factory=_default_mounts)
    io_pressure: float = Field(default=0.01, ge=0)
    units: dict[str, Unit] = Field(default_factory=_default_units)
    processes: dict[str, Process] = Field(default_factory=_default_processes)
    clock: Clock = Field(default_factory=Clock)
    down: bool = False

    @model_validator(mode="after")
    def _cpu_adds_up(self) -> HostState:
        if self.cpu_busy_pct + self.iowait_pct > 100:
            raise ValueError("cpu_busy_pct + iowait_pct must not exceed 100")
        return self

    def patched(self, patch: Mapping[str, Any]) -> HostState:
        """A new state: this one with a JSON merge patch applied (null deletes a key)."""
        return HostState.model_validate(merge_patch(self.model_dump(mode="json"), patch))


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: objects merge recursively, null removes, else replace."""
    if not isinstance(patch, Mapping):
        return patch
    result = dict(target) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


# --- remediation actions: their parameters and answers ------------------------------
class RestartUnitParams(_Model):
    unit: str


class FreeDiskParams(_Model):
    mountpoint: str


class ProcessParams(_Model):
    process: str


class TimeSyncParams(_Model):
    unit: str


class NoParams(_Model):
    pass


class ActionResult(_Model):
    """The answer to `POST /_control/hosts/{host}/actions/{action}`.

    `ok` is False when the action ran but did not achieve its goal (a unit whose restart
    does not fix it), so a playbook can fail the task the way `systemctl restart` would.
    """

    host: str
    action: str
    changed: bool
    ok: bool = True
    result: str


class ActionRecord(_Model):
    """One entry of `Fleet.actions`: what was asked and what it did."""

    host: str
    action: str
    params: dict[str, Any]
    changed: bool
    ok: bool
    result: str
    at: float
