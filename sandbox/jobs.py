"""The job engine behind the sandbox AWX and Semaphore servers.

A job is either a REAL `ansible-playbook` run of a playbook from `sandbox/playbooks/`
(`PlaybookJob`, in `sandbox.jobs_ansible`), or a SCRIPTED sequence of statuses with
durations and output lines (`ScriptedJob`, here), for tests that need a job stuck
forever, failing, erroring or canceled without paying ~2 s per Ansible run. The engine
that creates them for a server is `sandbox.jobs_server.JobEngine`.

Statuses are the engine's neutral `Phase` words; each server translates them into its
product's vocabulary. A scripted step may also carry any other word (e.g. "bogus"),
which servers report verbatim so clients' unknown-status handling can be tested.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any

PLAYBOOK_DIR = Path(__file__).parent / "playbooks"
DEFAULT_INVENTORY = ("web-01", "web-02", "db-01")


class Phase(StrEnum):
    QUEUED = "queued"
    STARTING = "starting"
    RUNNING = "running"
    CANCELING = "canceling"
    SUCCESSFUL = "successful"
    FAILED = "failed"
    ERROR = "error"
    CANCELED = "canceled"


TERMINAL = frozenset({Phase.SUCCESSFUL, Phase.FAILED, Phase.ERROR, Phase.CANCELED})
_NOT_STARTED = frozenset({Phase.QUEUED, Phase.STARTING})


@dataclass(frozen=True)
class Step:
    """One scripted status: held for `seconds`, printing `output` when entered."""

    status: str
    seconds: float = 0.0
    output: tuple[str, ...] = ()


@dataclass(frozen=True)
class Script:
    """A scripted job. The last step (or the first terminal one) is held forever."""

    steps: tuple[Step, ...]

    @classmethod
    def ending(cls, final: Phase, *, running: float = 0.2, output: Sequence[str] = ()) -> Script:
        """queued → starting → running for `running` s → `final`."""
        return cls(
            (
                Step(Phase.QUEUED, 0.05),
                Step(Phase.STARTING, 0.05),
                Step(Phase.RUNNING, running, tuple(output) or ("TASK [scripted] ***",)),
                Step(final, 0, (f"scripted job ended: {final}",)),
            )
        )

    @classmethod
    def succeed(cls, **kw: Any) -> Script:
        return cls.ending(Phase.SUCCESSFUL, **kw)

    @classmethod
    def fail(cls, **kw: Any) -> Script:
        return cls.ending(Phase.FAILED, **kw)

    @classmethod
    def error(cls, **kw: Any) -> Script:
        return cls.ending(Phase.ERROR, **kw)

    @classmethod
    def stuck(cls, output: Sequence[str] = ("TASK [waiting forever] ***",)) -> Script:
        """Running forever (until cancelled)."""
        return cls((Step(Phase.QUEUED, 0.05), Step(Phase.RUNNING, 0, tuple(output))))

    @classmethod
    def of(cls, *statuses: str, seconds: float = 0.05) -> Script:
        """Each status held `seconds` (the last forever): `Script.of("running", "bogus")`."""
        return cls(tuple(Step(s, seconds) for s in statuses))


@dataclass(frozen=True)
class JobTemplate:
    """A launchable template: a playbook file name in PLAYBOOK_DIR, or a script.

    `ask_*_on_launch` follow AWX: when false, a launch's limit / extra vars are ignored
    (and reported by the AWX server in `ignored_fields`); `limit` and `extra_vars` are
    the template's own values, used when the launch's are ignored or absent.
    """

    id: int
    name: str
    playbook: str | None = None
    script: Script | None = None
    ask_limit_on_launch: bool = True
    ask_variables_on_launch: bool = True
    limit: str = ""
    extra_vars: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if (self.playbook is None) == (self.script is None):
            raise ValueError(f"template {self.id}: give exactly one of playbook or script")


def _now() -> datetime:
    return datetime.now(UTC)


class Job:
    """A launched job: what was asked, when, and (via subclasses) how it progresses."""

    def __init__(
        self, job_id: int, template: JobTemplate, *, limit: str, extra_vars: dict[str, Any],
        request: Any,
    ) -> None:  # fmt: skip
        self.id = job_id
        self.template = template
        self.limit = limit
        self.extra_vars = extra_vars
        self.request = request  # the launch body exactly as the server received it
        self.created = _now()
        self.cancel_requests = 0
        self._lock = threading.RLock()
        self._done = threading.Event()

    # Subclasses define the progression.
    def snapshot(self) -> tuple[str, datetime | None, datetime | None]:
        """(status, started, finished) right now."""
        raise NotImplementedError

    def lines(self) -> list[tuple[datetime, str]]:
        """Output lines so far, each with the time it was printed."""
        raise NotImplementedError

    def _cancel(self) -> bool:
        raise NotImplementedError

    @property
    def status(self) -> str:
        return self.snapshot()[0]

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    @property
    def output(self) -> str:
        return "".join(f"{line}\n" for _, line in self.lines())

    def cancel(self) -> bool:
        """Ask the job to stop; False (nothing done) when it has already finished."""
        with self._lock:
            self.cancel_requests += 1
            return self._cancel()

    def wait(self, timeout: float) -> str:
        """Block until the job is terminal (or `timeout` passes); return its status."""
        deadline = time.monotonic() + timeout
        while not self.terminal and time.monotonic() < deadline:
            self._done.wait(0.02)
        return self.status

    def kill(self) -> None:
        """Stop at once without ceremony (server shutdown or reset)."""
        with self._lock:
            self._cancel()


class ScriptedJob(Job):
    """Walks its template's script by elapsed time; no thread needed."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        assert self.template.script is not None
        self._t0 = time.monotonic()
        self._canceled_at: float | None = None
        steps: list[tuple[float, Step]] = []
        offset = 0.0
        for step in self.template.script.steps:
            steps.append((offset, step))
            if step.status in TERMINAL:
                break  # a terminal step ends the script, whatever follows
            offset += step.seconds
        self._steps = steps

    def _entered(self) -> list[tuple[float, Step]]:
        with self._lock:
            elapsed = (self._canceled_at or time.monotonic()) - self._t0
            entered = [(at, s) for at, s in self._steps if at <= elapsed] or self._steps[:1]
            if self._canceled_at is not None:
                entered.append((elapsed, Step(Phase.CANCELED, 0, ("job canceled",))))
            return entered

    def _at(self, offset: float) -> datetime:
        return self.created + timedelta(seconds=offset)

    def snapshot(self) -> tuple[str, datetime | None, datetime | None]:
        entered = self._entered()
        # A job canceled before it ran never started (AWX shows started: null).
        started = next(
            (at for at, s in entered if s.status not in _NOT_STARTED | {Phase.CANCELED}), None
        )
        finished = next((at for at, s in entered if s.status in TERMINAL), None)
        return (
            entered[-1][1].status,
            None if started is None else self._at(started),
            None if finished is None else self._at(finished),
        )

    def lines(self) -> list[tuple[datetime, str]]:
        return [(self._at(at), line) for at, s in self._entered() for line in s.output]

    def _cancel(self) -> bool:
        if self._canceled_at is not None or self.terminal:
            return False
        self._canceled_at = time.monotonic()
        self._done.set()
        return True
