"""The ledger: dedup episodes, actions, decisions, jobs, attempts and the audit trail.

One small SQL database behind SQLAlchemy (async): a SQLite file by default (WAL mode, a
busy timeout, `BEGIN IMMEDIATE` for writes that must not race), PostgreSQL by URL when
workers run on several machines (an advisory transaction lock serialises the same
critical sections). Unique constraints carry every "at most once": one open episode per
fingerprint, one decision per action, one job per action.

`Ledger` is one class, assembled from one part per concern so each stays small:
connection and schema (`ledger_base`), dedup episodes (`ledger_episodes`), actions and
approvals (`ledger_actions`), jobs and attempts (`ledger_jobs`), and the operational
records — audit, heartbeats, alerts, cycles (`ledger_ops`), retention with the
self-metrics' facts (`ledger_retention`), and the approval listener's recovery queries
(`ledger_votes`).
"""

from __future__ import annotations

from clients.ledger_actions import ActionLedger
from clients.ledger_base import IN_FLIGHT_STATUSES, from_ts, to_ts
from clients.ledger_episodes import EpisodeLedger
from clients.ledger_jobs import JobLedger
from clients.ledger_ops import OpsLedger
from clients.ledger_outcomes import OutcomeLedger
from clients.ledger_retention import RetentionLedger
from clients.ledger_votes import VoteLedger


class Ledger(
    EpisodeLedger, ActionLedger, JobLedger, OpsLedger, RetentionLedger, VoteLedger, OutcomeLedger
):
    """Async access to the ledger database. Build it with the URL; it connects lazily."""


__all__ = ["IN_FLIGHT_STATUSES", "Ledger", "from_ts", "to_ts"]
