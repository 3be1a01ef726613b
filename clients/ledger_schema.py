"""The ledger's tables and its forward-only migrations.

Times are stored as epoch seconds (float) so SQLite and PostgreSQL compare them the same
way; the `Ledger` converts them to timezone-aware datetimes at its boundary.

Migrations are an ordered list of `(version, apply)` pairs. `schema_version` holds the
versions applied; a new version is appended, never edited, and runs once on first use.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import (
    Boolean,
    Column,
    Connection,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)

metadata = MetaData()

schema_version = Table(
    "schema_version",
    metadata,
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("applied_at", Float, nullable=False),
)

# One row per issue episode: first detection until seen cleared.
issue_episodes = Table(
    "issue_episodes",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("fingerprint", String(512), nullable=False),
    Column("host", String(255), nullable=False),
    Column("check_name", String(64), nullable=False),
    Column("subject", String(255), nullable=False),
    Column("opened_at", Float, nullable=False),
    Column("last_seen_at", Float, nullable=False),
    Column("claimed_by", String(64)),
    Column("claimed_at", Float),
    Column("reported_at", Float),
    Column("closed_at", Float),
    Column("close_reason", String(64)),
    # at most one open episode per fingerprint
    Index(
        "uq_open_episode",
        "fingerprint",
        unique=True,
        sqlite_where=text("closed_at IS NULL"),
        postgresql_where=text("closed_at IS NULL"),
    ),
)

actions = Table(
    "actions",
    metadata,
    Column("action_id", String(64), primary_key=True),
    Column("cycle_id", String(64), nullable=False),
    Column("flow_run_id", String(64)),
    Column("host", String(255), nullable=False),
    Column("catalog_key", String(128), nullable=False),
    Column("risk", String(16), nullable=False),
    Column("policy_hash", String(64), nullable=False),
    Column("fingerprints", Text, nullable=False),  # JSON list
    Column("proposal", Text, nullable=False),  # JSON of the ProposedAction
    Column("status", String(32), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("finished_at", Float),
)

approval_requests = Table(
    "approval_requests",
    metadata,
    Column("action_id", String(64), primary_key=True),
    Column("channel_id", String(32)),
    Column("message_id", String(32)),
    Column("flow_run_id", String(64)),
    Column("risk", String(16), nullable=False),
    Column("deadline", Float, nullable=False),
    Column("policy_hash", String(64), nullable=False),
    Column("requested_at", Float, nullable=False),
    Column("reminder_sent_at", Float),
    Column("pause_key", String(128)),
)

votes = Table(
    "votes",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("action_id", String(64), nullable=False),
    Column("user_id", String(32), nullable=False),
    Column("username", String(128), nullable=False),
    Column("emoji", String(16), nullable=False),
    Column("first_seen_at", Float, nullable=False),
    Column("removed_at", Float),
    UniqueConstraint("action_id", "user_id", "emoji", name="uq_vote"),
)

# The unique decision per action: intended first, applied once Prefect accepted it.
decisions = Table(
    "decisions",
    metadata,
    Column("action_id", String(64), primary_key=True),
    Column("decision", String(16), nullable=False),
    Column("decider", String(255), nullable=False),
    Column("via", String(32), nullable=False),
    Column("comment", Text),
    Column("intended_at", Float, nullable=False),
    Column("applied_at", Float),
)

# At most one job per action: intent written before the launch request, id after.
jobs = Table(
    "jobs",
    metadata,
    Column("action_id", String(64), primary_key=True),
    Column("runner", String(16), nullable=False),
    Column("template", String(255), nullable=False),
    Column("marker", String(128), nullable=False),
    Column("intent_at", Float, nullable=False),
    Column("job_id", String(64)),
    Column("job_url", Text),
    Column("launched_at", Float),
    Column("state", String(16)),
    Column("finished_at", Float),
    Column("output_tail", Text),
)

# One row per (action, fingerprint) outcome: the attempt history behind cooldowns.
attempts = Table(
    "attempts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("action_id", String(64), nullable=False),
    Column("fingerprint", String(512), nullable=False),
    Column("host", String(255), nullable=False),
    Column("catalog_key", String(128), nullable=False),
    Column("outcome", String(32), nullable=False),
    Column("explanation", Text),
    Column("counts", Boolean, nullable=False),
    Column("recorded_at", Float, nullable=False),
    UniqueConstraint("action_id", "fingerprint", name="uq_attempt"),
)

cycles = Table(
    "cycles",
    metadata,
    Column("cycle_id", String(64), primary_key=True),
    Column("flow_run_id", String(64)),
    Column("started_at", Float, nullable=False),
    Column("finished_at", Float),
    Column("actions_dispatched", Integer, nullable=False, default=0),
    Column("summary_posted_at", Float),
    Column("report", Text),
)

audit = Table(
    "audit",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", Float, nullable=False),
    Column("event", String(64), nullable=False),
    Column("action_id", String(64)),
    Column("cycle_id", String(64)),
    Column("detail", Text, nullable=False),  # JSON
)

heartbeats = Table(
    "heartbeats",
    metadata,
    Column("component", String(64), primary_key=True),
    Column("at", Float, nullable=False),
    Column("detail", Text),
)

# Firing/clear state of the remediator's own alerts (dead-man's switch), so each
# transition is posted exactly once.
alert_states = Table(
    "alert_states",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("firing", Boolean, nullable=False),
    Column("changed_at", Float, nullable=False),
    Column("detail", Text),
)

V1_TABLES = [
    issue_episodes,
    actions,
    approval_requests,
    votes,
    decisions,
    jobs,
    attempts,
    cycles,
    audit,
    heartbeats,
    alert_states,
]


def _v1(conn: Connection) -> None:
    metadata.create_all(conn, tables=V1_TABLES)


Migration = tuple[int, Callable[[Connection], None]]

MIGRATIONS: list[Migration] = [(1, _v1)]
