"""The ledger: dedup episodes, actions, decisions, jobs, attempts and the audit trail.

One small SQL database behind SQLAlchemy (async): a SQLite file by default (WAL mode, a
busy timeout, `BEGIN IMMEDIATE` for writes that must not race), PostgreSQL by URL when
workers run on several machines (an advisory transaction lock serialises the same
critical sections). Unique constraints carry every "at most once": one open episode per
fingerprint, one decision per action, one job per action.

`Ledger` owns the connection and the schema (`ledger_base`, `ledger_schema`) and four
repositories that share it, one file each:

- `ledger.actions` (`ledger_actions`): actions, approval requests, votes, decisions and
  verdicts, with the approval listener's recovery queries;
- `ledger.jobs` (`ledger_jobs`): jobs and launch claims, action runs' liveness, the
  reconciler's claims, continuations and give-ups;
- `ledger.episodes` (`ledger_episodes`): dedup episodes, attempts and relapses,
  escalations;
- `ledger.operations` (`ledger_operations`): the audit trail, heartbeats, alert states,
  cycles, approval capacity, retention and the self-metrics' facts.
"""

from __future__ import annotations

from collections.abc import Sequence

from clients.ledger_actions import ActionRepository
from clients.ledger_base import IN_FLIGHT_STATUSES, LedgerConnection, Repository, from_ts, to_ts
from clients.ledger_episodes import EpisodeRepository
from clients.ledger_jobs import JobRepository
from clients.ledger_operations import OperationsRepository
from clients.ledger_schema import MIGRATIONS, Migration

# The repository attribute of `Ledger` → its class.
REPOSITORIES: dict[str, type[Repository]] = {
    "actions": ActionRepository,
    "jobs": JobRepository,
    "episodes": EpisodeRepository,
    "operations": OperationsRepository,
}


class Ledger(LedgerConnection):
    """Async access to the ledger database. Build it with the URL; it connects lazily."""

    def __init__(
        self, url: str, *, migrations: Sequence[Migration] = MIGRATIONS, echo: bool = False
    ) -> None:
        super().__init__(url, migrations=migrations, echo=echo)
        self.actions = ActionRepository(self)
        self.jobs = JobRepository(self)
        self.episodes = EpisodeRepository(self)
        self.operations = OperationsRepository(self)


__all__ = ["IN_FLIGHT_STATUSES", "REPOSITORIES", "Ledger", "from_ts", "to_ts"]
