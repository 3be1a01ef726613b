"""The action catalog: the only things Claude may propose, with guarded parameters.

Parameters are described by a deliberately small schema language (`ParamSpec`), so
validation lives here in pure code: types, enums, regex patterns and bounds, no extra
keys, and `from_subject` binding a value to the subject of an issue the action addresses
(a unit restart may only name the unit that actually failed).

Which issues an action addresses follows from the entry (`core.vetting` applies it): a
`from_subject` parameter selects the issues whose subject is its value; an entry marked
`addresses_all_on_host` (a reboot) claims every issue of its checks on the host; any other
entry addresses the issues its fingerprints name.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from core.models import CheckName, Frozen, Risk

KEY = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


class TemplateKind(StrEnum):
    """What names a runner's job: an id in the runner's API, or a playbook on this machine."""

    NUMBER = "number"  # `CatalogEntry.template_id`
    PLAYBOOK = "playbook"  # `CatalogEntry.playbook`

    def parse(self, template: str) -> int | str:
        """The template as the runner's client takes it (ids are stored as text)."""
        return int(template) if self is TemplateKind.NUMBER else template


class Runner(StrEnum):
    """Where a catalog entry's job runs. Everything else about a runner — its client,
    block, block-name field, status table, secrets — is its entry in
    `blocks.job_runners` (not pure, so not here)."""

    AWX = "awx"
    SEMAPHORE = "semaphore"
    ANSIBLE = "ansible"

    @property
    def template_kind(self) -> TemplateKind:
        # Only local Ansible runs a playbook path; every remote runner names a template id.
        return TemplateKind.PLAYBOOK if self is Runner.ANSIBLE else TemplateKind.NUMBER


class ParamSpec(Frozen):
    type: Literal["string", "integer", "number", "boolean"] = "string"
    description: str = ""
    required: bool = True
    pattern: str | None = Field(default=None, description="Full-match regex for strings.")
    enum: list[str | int | float] | None = None
    max_length: int = Field(default=256, ge=1, le=4096)
    minimum: float | None = None
    maximum: float | None = None
    from_subject: bool = Field(
        default=False, description="The value must be the subject of an addressed issue."
    )
    equals_host: bool = Field(
        default=False, description="The value must repeat the target host's name."
    )

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, v: str | None) -> str | None:
        if v is not None:
            re.compile(v)
        return v

    def json_schema(self) -> dict[str, Any]:
        schema: dict[str, Any] = {"type": self.type, "description": self.description}
        if self.pattern:
            schema["pattern"] = f"^(?:{self.pattern})$"
        if self.enum is not None:
            schema["enum"] = self.enum
        if self.type == "string":
            schema["maxLength"] = self.max_length
        if self.minimum is not None:
            schema["minimum"] = self.minimum
        if self.maximum is not None:
            schema["maximum"] = self.maximum
        return schema

    def check(self, name: str, value: Any) -> str | None:
        """The reason `value` is invalid, or None."""
        kinds = {"string": (str,), "integer": (int,), "number": (int, float), "boolean": (bool,)}
        if isinstance(value, bool) and self.type != "boolean":
            return f"{name} must be a {self.type}"
        if not isinstance(value, kinds[self.type]):
            return f"{name} must be a {self.type}"
        if self.enum is not None and value not in self.enum:
            return f"{name} must be one of {self.enum}"
        if isinstance(value, str):
            if len(value) > self.max_length:
                return f"{name} is longer than {self.max_length} characters"
            if self.pattern and not re.fullmatch(self.pattern, value):
                return f"{name} does not match {self.pattern!r}"
        if isinstance(value, int | float) and not isinstance(value, bool):
            if self.minimum is not None and value < self.minimum:
                return f"{name} is below {self.minimum:g}"
            if self.maximum is not None and value > self.maximum:
                return f"{name} is above {self.maximum:g}"
        return None


class TargetScope(Frozen):
    """Which hosts an entry may act on: all of the given conditions must hold."""

    hosts: list[str] = Field(default_factory=list, description="Allowed hosts (empty: any).")
    host_regex: str | None = Field(default=None, description="Full-match regex on the host.")
    match_labels: dict[str, str] = Field(
        default_factory=dict, description="Labels the issue's series must carry."
    )

    @field_validator("host_regex")
    @classmethod
    def _compiles(cls, v: str | None) -> str | None:
        if v is not None:
            re.compile(v)
        return v

    def allows(self, host: str, labels: dict[str, str]) -> bool:
        if self.hosts and host not in self.hosts:
            return False
        if self.host_regex and not re.fullmatch(self.host_regex, host):
            return False
        return all(labels.get(k) == v for k, v in self.match_labels.items())


class CatalogEntry(Frozen):
    key: str
    description: str = Field(min_length=10, description="What the job does, for the model.")
    runner: Runner
    template_id: int | None = Field(default=None, description="AWX/Semaphore template id.")
    playbook: str | None = Field(default=None, description="Playbook path (runner ansible).")
    parameters: dict[str, ParamSpec] = Field(default_factory=dict)
    min_risk: Risk = Risk.LOW
    addresses: list[CheckName] = Field(
        default_factory=lambda: list(CheckName), description="Checks this action can fix."
    )
    addresses_all_on_host: bool = Field(
        default=False,
        description="By its nature it fixes every issue of its checks on the host (a "
        "reboot), so it claims them all; never with a from_subject parameter.",
    )
    targets: TargetScope = Field(default_factory=TargetScope)
    max_job_seconds: int = Field(default=900, ge=10, le=24 * 3600)
    deadline_default_may_run: bool = Field(
        default=True, description="May a deadline default (nobody answered) run it?"
    )

    @field_validator("key")
    @classmethod
    def _key(cls, v: str) -> str:
        if not KEY.match(v):
            raise ValueError(f"{v!r}: keys are lower-case words joined by underscores")
        return v

    @model_validator(mode="after")
    def _runner_target(self) -> CatalogEntry:
        kind = self.runner.template_kind
        if kind is TemplateKind.PLAYBOOK and not self.playbook:
            raise ValueError(f"runner {self.runner.value!r} needs a playbook")
        if kind is TemplateKind.NUMBER and self.template_id is None:
            raise ValueError(f"runner {self.runner.value!r} needs a template_id")
        for name in self.parameters:
            if not KEY.match(name):
                raise ValueError(f"parameter name {name!r} is not a lower-case identifier")
        bound = self.subject_parameters
        if self.addresses_all_on_host and bound:
            # One touches a named subject, the other claims the whole host: contradictory.
            raise ValueError(
                f"addresses_all_on_host cannot be combined with from_subject parameter {bound[0]!r}"
            )
        return self

    @property
    def subject_parameters(self) -> list[str]:
        """The parameters bound to the subject of an addressed issue."""
        return [n for n, p in self.parameters.items() if p.from_subject]

    @property
    def template(self) -> str:
        playbook = self.runner.template_kind is TemplateKind.PLAYBOOK
        return self.playbook if playbook else str(self.template_id)

    def parameters_schema(self) -> dict[str, Any]:
        return {
            "type": "object",
            "properties": {n: p.json_schema() for n, p in self.parameters.items()},
            "required": [n for n, p in self.parameters.items() if p.required],
            "additionalProperties": False,
        }

    def validate_parameters(self, params: Any, subjects: set[str], host: str) -> list[str]:
        """Every reason the parameters are invalid (empty when they are fine)."""
        if not isinstance(params, dict):
            return ["parameters must be an object"]
        problems = [f"unknown parameter {k!r}" for k in params if k not in self.parameters]
        for name, spec in self.parameters.items():
            if name not in params:
                if spec.required:
                    problems.append(f"missing parameter {name!r}")
                continue
            reason = spec.check(name, params[name])
            if reason is None and spec.from_subject and params[name] not in subjects:
                reason = f"{name} must name the subject of an addressed issue"
            if reason is None and spec.equals_host and params[name] != host:
                reason = f"{name} must repeat the target host's name"
            if reason:
                problems.append(reason)
        return problems


UNIT = ParamSpec(
    description="systemd unit name",
    pattern=r"[A-Za-z0-9@:._-]+\.(service|socket|timer)",
    max_length=128,
    from_subject=True,
)
MOUNT = ParamSpec(
    description="mountpoint", pattern=r"/[A-Za-z0-9._/-]*", max_length=256, from_subject=True
)
PROCESS = ParamSpec(
    description="process group name", pattern=r"[A-Za-z0-9._:+-]{1,64}", max_length=64
)

# Template ids match the sandbox's AWX templates; a real deployment edits them.
DEFAULT_CATALOG: tuple[CatalogEntry, ...] = (
    CatalogEntry(
        key="restart_unit",
        runner=Runner.AWX,
        template_id=10,
        description="Restart one failed or inactive systemd unit on the host.",
        parameters={"unit": UNIT},
        min_risk=Risk.LOW,
        addresses=[CheckName.FAILED_UNIT, CheckName.INACTIVE_UNIT],
        max_job_seconds=300,
    ),
    CatalogEntry(
        key="free_disk",
        runner=Runner.AWX,
        template_id=11,
        description="Free disk space on a mount: vacuum the journal, clean the package "
        "cache, delete rotated logs older than 7 days.",
        parameters={"mountpoint": MOUNT},
        min_risk=Risk.LOW,
        addresses=[CheckName.DISK],
        max_job_seconds=600,
    ),
    CatalogEntry(
        key="restart_process",
        runner=Runner.AWX,
        template_id=12,
        description="Gracefully restart a runaway process group (its service is restarted).",
        parameters={"process": PROCESS},
        min_risk=Risk.MEDIUM,
        addresses=[CheckName.CPU, CheckName.MEMORY],
        max_job_seconds=300,
    ),
    CatalogEntry(
        key="kill_process",
        runner=Runner.AWX,
        template_id=13,
        description="Kill a runaway process group that does not belong to a service.",
        parameters={"process": PROCESS},
        min_risk=Risk.MEDIUM,
        addresses=[CheckName.CPU, CheckName.MEMORY],
        max_job_seconds=120,
    ),
    CatalogEntry(
        key="reboot_host",
        runner=Runner.AWX,
        template_id=14,
        description="Reboot the host (a short, controlled outage of everything on it).",
        min_risk=Risk.MEDIUM,
        max_job_seconds=900,
        deadline_default_may_run=False,
        addresses=[CheckName.CPU, CheckName.MEMORY, CheckName.IO_PRESSURE, CheckName.FAILED_UNIT],
        addresses_all_on_host=True,  # a reboot clears load and restarts every unit
    ),
    CatalogEntry(
        key="fence_database",
        runner=Runner.AWX,
        template_id=15,
        description="Fence the host's database primary so its standby takes over: kill the "
        "database process and reboot the host (infrastructure change, data "
        "written since the last replication may be lost).",
        parameters={
            "process": PROCESS,
            "confirm_host": ParamSpec(
                description="the target host's name, repeated",
                pattern=r"[A-Za-z0-9._-]{1,255}",
                equals_host=True,
            ),
        },
        min_risk=Risk.HIGH,
        max_job_seconds=1800,
        deadline_default_may_run=False,
        addresses=[
            CheckName.FAILED_UNIT,
            CheckName.DISK,
            CheckName.IO_PRESSURE,
            CheckName.MEMORY,
            CheckName.CPU,
        ],
        targets=TargetScope(host_regex=r"db-.*"),
    ),
    CatalogEntry(
        key="restart_time_sync",
        runner=Runner.AWX,
        template_id=16,
        description="Restart the host's time-synchronisation daemon so that it steps the "
        "clock back in sync.",
        parameters={
            "unit": ParamSpec(
                description="the host's time-sync unit",
                enum=["systemd-timesyncd.service", "chrony.service"],
            )
        },
        min_risk=Risk.LOW,
        addresses=[CheckName.CLOCK_SYNC],
        max_job_seconds=300,
    ),
)
