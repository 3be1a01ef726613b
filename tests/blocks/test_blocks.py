"""The eight blocks: described fields, hidden secrets, explicit slugs, client wiring."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from prefect.blocks.core import Block
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import BlockDocumentUpdate
from pydantic import SecretStr

from blocks import (
    ALL_BLOCKS,
    AwxConnection,
    ClaudeCredentials,
    DiscordBot,
    LedgerDatabase,
    LokiConnection,
    PrometheusConnection,
    SemaphoreConnection,
    SlackBot,
)
from sandbox.http import Response, SandboxServer
from tests.fixtures.anthropic import ANTHROPIC_TEST_KEY
from tests.fixtures.jobs import AWX_TOKEN, SEMAPHORE_PROJECT, SEMAPHORE_TOKEN
from tests.fixtures.loki_discord import BOT_TOKEN, BOT_USER_ID, CHANNEL_ID

PLANTED = "planted-secret-93b1c7"


def planted_blocks() -> list[Block]:
    s = SecretStr(PLANTED)
    return [
        PrometheusConnection(url="http://127.0.0.1:1", bearer_token=s),
        LokiConnection(url="http://127.0.0.1:1", basic_auth_username="u", basic_auth_password=s),
        DiscordBot(bot_token=s, approvals_channel_id="1"),
        SlackBot(bot_token=s, channel_id="C1", api_base_url="http://127.0.0.1:1/api/"),
        ClaudeCredentials(api_key=s),
        AwxConnection(url="http://127.0.0.1:1", token=s),
        SemaphoreConnection(url="http://127.0.0.1:1", api_token=s, project_id=1),
        LedgerDatabase(url=SecretStr(f"postgresql+asyncpg://app:{PLANTED}@127.0.0.1:1/x")),
    ]


@pytest.mark.parametrize("cls", ALL_BLOCKS, ids=lambda c: c.__name__)
def test_every_field_is_described_and_slug_is_explicit(cls: type[Block]) -> None:
    for name, field in cls.model_fields.items():
        assert field.description and len(field.description) > 10, f"{cls.__name__}.{name}"
    assert "_block_type_slug" in cls.__dict__ or cls.__private_attributes__
    assert cls.get_block_type_slug().startswith("remediation-")
    assert cls.__doc__ and "Example:" in cls.__doc__


def test_slugs_are_unique() -> None:
    slugs = [c.get_block_type_slug() for c in ALL_BLOCKS]
    assert len(set(slugs)) == len(ALL_BLOCKS) == 9


@pytest.mark.parametrize("block", planted_blocks(), ids=lambda b: type(b).__name__)
def test_secrets_hidden_unless_asked(block: Block, caplog: pytest.LogCaptureFixture) -> None:
    assert PLANTED not in repr(block)
    assert PLANTED not in str(block)
    assert PLANTED not in str(block.model_dump())
    assert PLANTED not in block.model_dump_json()
    with caplog.at_level(logging.INFO):
        logging.getLogger("test").info("block: %s %r", block, block)
    assert PLANTED not in caplog.text
    assert PLANTED in str(block.model_dump(context={"include_secrets": True}))


@pytest.mark.parametrize("block", planted_blocks(), ids=lambda b: type(b).__name__)
async def test_building_a_client_makes_no_network_call(block: Block) -> None:
    client = block.get_client()  # every URL points at a closed port
    await client.aclose()


def test_auth_settings_are_validated() -> None:
    with pytest.raises(ValueError, match="go together"):
        PrometheusConnection(url="http://x", basic_auth_username="u")
    with pytest.raises(ValueError, match="token, or username and password"):
        AwxConnection(url="http://x")


class Recorder(SandboxServer):
    """Answers like Prometheus; records what it received."""

    def setup_routes(self) -> None:
        self.route(
            "POST",
            "/api/v1/query",
            lambda r: Response(
                200, {"status": "success", "data": {"resultType": "vector", "result": []}}
            ),
        )


async def test_clients_carry_their_credentials(
    loki: Any,
    discord: Any,
    anthropic: Any,
    awx: Any,
    semaphore: Any,
    tmp_path: Path,
) -> None:
    with Recorder() as prom:
        async with PrometheusConnection(
            url=prom.url, bearer_token=SecretStr("tok-1")
        ).get_client() as c:
            assert await c.query("up") == []
        assert prom.received("POST")[0].headers["authorization"] == "Bearer tok-1"
    async with LokiConnection(url=loki.url, tenant_id="team-a").get_client() as c:
        await c.query_range('{host="x"}', *_window())
    assert loki.received("GET", "/loki/api/v1/query_range")[0].headers["x-scope-orgid"] == "team-a"
    async with DiscordBot(
        bot_token=SecretStr(BOT_TOKEN),
        approvals_channel_id=CHANNEL_ID,
        api_base_url=discord.api_base,
    ).get_client() as c:
        assert (await c.current_user()).id == BOT_USER_ID
    assert discord.received("GET")[0].headers["authorization"] == f"Bot {BOT_TOKEN}"
    async with ClaudeCredentials(
        api_key=SecretStr(ANTHROPIC_TEST_KEY), base_url=anthropic.url
    ).get_client() as c:
        reply = await c.create(system="s", messages=[{"role": "user", "content": "hi"}])
    assert reply.text
    assert ANTHROPIC_TEST_KEY in str(anthropic.received("POST")[0].headers)
    async with AwxConnection(url=awx.url, token=SecretStr(AWX_TOKEN)).get_client() as c:
        ref = await c.launch(30, limit="web-01", extra_vars={})
    assert awx.received("POST")[0].headers["authorization"] == f"Bearer {AWX_TOKEN}"
    assert ref.job_id
    async with SemaphoreConnection(
        url=semaphore.url, api_token=SecretStr(SEMAPHORE_TOKEN), project_id=SEMAPHORE_PROJECT
    ).get_client() as c:
        await c.launch(30, limit="web-01", extra_vars={})
    assert semaphore.received("POST")[0].headers["authorization"] == f"Bearer {SEMAPHORE_TOKEN}"
    async with LedgerDatabase(
        url=SecretStr(f"sqlite+aiosqlite:///{tmp_path}/l.db")
    ).get_client() as ledger:
        assert await ledger.ensure_schema() >= 1


def _window() -> tuple[Any, Any]:
    from datetime import UTC, datetime, timedelta

    now = datetime.now(UTC)
    return now - timedelta(minutes=5), now


def test_ledger_default_is_sqlite_under_prefect_home() -> None:
    url = LedgerDatabase().url.get_secret_value()
    assert url.startswith("sqlite+aiosqlite:///")
    assert url.endswith("remediation-ledger.db")


def test_block_register_lists_every_block(prefect_harness: str) -> None:
    env = {**os.environ, "PREFECT_API_URL": prefect_harness}
    out = subprocess.run(
        [sys.executable, "-m", "prefect", "block", "register", "-m", "blocks"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert f"Successfully registered {len(ALL_BLOCKS)} blocks" in out.stdout


async def test_document_saved_before_new_fields_still_loads(prefect_harness: str) -> None:
    doc_id = await LokiConnection(url="http://loki:3100", tenant_id="t").asave(
        "older-loki", overwrite=True
    )
    async with get_client() as client:  # strip every optional field: an older version's data
        await client.update_block_document(
            doc_id, BlockDocumentUpdate(data={"url": "http://loki:3100"}, merge_existing_data=False)
        )
    loaded = await LokiConnection.aload("older-loki")
    assert loaded.url == "http://loki:3100"
    assert loaded.timeout_seconds == 10.0 and loaded.tenant_id is None


def test_default_claude_model_is_current() -> None:
    import typing

    from anthropic._data import DEPRECATED_MODELS
    from anthropic.types.model_param import ModelParam

    known = typing.get_args(typing.get_args(ModelParam)[0])
    model = ClaudeCredentials(api_key=SecretStr("k")).model
    assert model in known and model not in DEPRECATED_MODELS
