"""The job-runner registry: one entry describes one runner.

An entry says which `Runner` it is, which block holds its connection and secrets (and
under which `BlockNames` field that block's document is named), which client the block
builds, and that client's status table. Everything that used to list the runners by
hand derives from here: `remediation-blocks` (the blocks it saves), `tasks.connections`
(which block class a name loads, the runners' secrets added for redaction), the runner
an action launches on (`tasks.action_run.job_runner`), and the blocks each flow needs.
How a template is named (an id, a playbook path) is pure, so it sits on `Runner`
(`core.catalog.Runner.template_kind`).

A remote runner registers itself at the end of its block's module (`blocks/awx.py`),
the way a node_exporter collector registers itself in its `init()`; importing the
`blocks` package imports every block module, so the registry is complete whenever
anything of `blocks` is imported. Local Ansible has no block: it runs on this machine
(`tasks.runners.AnsibleRunner`, built from the action's settings).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import get_args

from pydantic import SecretStr

from blocks.base import RemediationBlock
from core.catalog import Runner, TemplateKind
from core.wire import JobState


@dataclass(frozen=True)
class JobRunnerSpec:
    """One job runner. `name` is its `Runner` value, which is also the `BlockNames` field
    naming its block document, the kind `remediation-blocks --only` takes and the
    `REMEDIATION_<NAME>_*` prefix of its variables. `block` is None for a runner on this
    machine (no connection, no secrets); then `client` and `states` are None too."""

    name: str
    block: type[RemediationBlock] | None = None
    client: type | None = None  # what `block.get_client()` builds (a JobRunner)
    states: Mapping[str, JobState] | None = None  # the client's own status table

    @property
    def runner(self) -> Runner:
        return Runner(self.name)

    @property
    def names_field(self) -> str:
        return self.name

    @property
    def template_kind(self) -> TemplateKind:
        return self.runner.template_kind

    @property
    def secret_fields(self) -> tuple[str, ...]:
        """The block's secret fields: masked wherever their values appear (redaction)."""
        if self.block is None:
            return ()
        return tuple(
            name
            for name, info in self.block.model_fields.items()
            if info.annotation is SecretStr or SecretStr in get_args(info.annotation)
        )

    @property
    def terminal_states(self) -> dict[str, JobState]:
        """The runner's words that end a job, and what they mean here."""
        return {word: state for word, state in (self.states or {}).items() if state.terminal}


_REGISTRY: dict[str, JobRunnerSpec] = {Runner.ANSIBLE.value: JobRunnerSpec(Runner.ANSIBLE.value)}


def register_runner(spec: JobRunnerSpec) -> JobRunnerSpec:
    """Add a runner (once: a second entry under the same name is a mistake)."""
    if spec.name in _REGISTRY:
        raise ValueError(f"runner {spec.name!r} is already registered")
    _REGISTRY[spec.name] = spec
    return spec


def unregister_runner(name: str) -> None:
    """Remove an entry (tests register entries of their own and take them back)."""
    _REGISTRY.pop(name, None)


def job_runners() -> Iterator[JobRunnerSpec]:
    """Every registered runner, in registration order."""
    return iter(list(_REGISTRY.values()))


def runners_with_blocks() -> tuple[JobRunnerSpec, ...]:
    """The runners reached over the network: each has a block, a client and secrets."""
    return tuple(spec for spec in _REGISTRY.values() if spec.block is not None)


def runner_block_fields() -> tuple[str, ...]:
    """The `BlockNames` fields of every runner's block (a flow that launches needs them
    all; a flow that reads logs loads them for redaction)."""
    return tuple(spec.names_field for spec in runners_with_blocks())


def runner_spec(runner: Runner) -> JobRunnerSpec:
    try:
        return _REGISTRY[runner.value]
    except KeyError:
        raise LookupError(f"runner {runner.value!r} is not registered") from None


def runner_by_field(field: str) -> JobRunnerSpec | None:
    """The runner whose block is named by this `BlockNames` field, if any."""
    return next((s for s in runners_with_blocks() if s.names_field == field), None)
