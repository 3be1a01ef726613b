"""The job-runner registry (`blocks/job_runners.py`): every registered runner is complete,
and registering an entry is all `remediation-blocks`, the connections and the redaction
of secrets need to pick a runner up. No test here names a runner."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import Field, SecretStr

from blocks import ALL_BLOCKS
from blocks.base import RemediationBlock
from blocks.job_runners import (
    JobRunnerSpec,
    job_runners,
    register_runner,
    runners_with_blocks,
    unregister_runner,
)
from blocks.names import BlockNames
from blocks.setup import _variables_help, kinds, setup_blocks, variable
from core.catalog import CatalogEntry, TemplateKind
from core.redact import redact
from core.wire import JobState
from tasks.connections import Connections, add_runner_secrets, open_connections, runner_blocks

TAG = uuid.uuid4().hex[:8]
REMOTE = [pytest.param(spec, id=spec.name) for spec in runners_with_blocks()]


def test_there_are_runners_with_blocks_and_one_on_this_machine() -> None:
    assert len(REMOTE) >= 2
    assert [spec.name for spec in job_runners() if spec.block is None] == ["ansible"]


@pytest.mark.parametrize("spec", REMOTE)
def test_a_runners_block_is_named_by_an_optional_field_defaulting_to_its_slug(
    spec: JobRunnerSpec,
) -> None:
    assert spec.block is not None
    field = BlockNames.model_fields[spec.names_field]
    assert field.default == spec.block.get_block_type_slug()
    assert BlockNames(**{spec.names_field: None}).model_dump()[spec.names_field] is None


@pytest.mark.parametrize("spec", REMOTE)
def test_a_runners_block_is_registered_with_prefect_and_holds_secrets(
    spec: JobRunnerSpec,
) -> None:
    assert spec.block in ALL_BLOCKS and kinds()[spec.names_field] is spec.block
    assert spec.secret_fields  # a remote runner always has a credential to mask


@pytest.mark.parametrize("spec", REMOTE)
def test_a_runners_status_table_is_its_clients_and_ends_every_way(spec: JobRunnerSpec) -> None:
    assert spec.client is not None and spec.states is spec.client.states
    ends = set(spec.terminal_states.values())
    assert {JobState.SUCCESSFUL, JobState.CANCELED} <= ends
    assert ends & {JobState.FAILED, JobState.ERROR}
    assert set(spec.states.values()) - ends  # and words for a job still pending/running


@pytest.mark.parametrize("spec", [pytest.param(s, id=s.name) for s in job_runners()])
def test_a_catalog_entry_names_its_job_the_way_its_runner_takes_it(spec: JobRunnerSpec) -> None:
    where = {"template_id": 10} if spec.template_kind is TemplateKind.NUMBER else {}
    where = where or {"playbook": "restart_unit.yml"}
    entry = CatalogEntry(key="fix", description="a job that fixes", runner=spec.runner, **where)
    assert spec.template_kind.parse(entry.template) in (10, "restart_unit.yml")
    with pytest.raises(ValueError, match=f"runner '{spec.name}' needs a"):
        CatalogEntry(key="fix", description="a job that fixes", runner=spec.runner)


@pytest.mark.parametrize("spec", REMOTE)
def test_remediation_blocks_help_lists_every_runner_secret_as_a_secret_variable(
    spec: JobRunnerSpec,
) -> None:
    text = _variables_help()
    for field in spec.secret_fields:
        assert any(
            line.strip().startswith(variable(spec.names_field, field)) and "(secret)" in line
            for line in text.splitlines()
        ), field


# --- a runner registered by a test alone -----------------------------------------------------
class _ExtraRunnerClient:
    def __init__(self, url: str, key: str) -> None:
        self.url, self.key, self.closed = url, key, False

    async def aclose(self) -> None:
        self.closed = True


class ExtraRunnerConnection(RemediationBlock):
    """A runner that exists only in this test."""

    _block_type_name = f"Remediation Extra Runner {TAG}"
    _block_type_slug = f"remediation-test-runner-{TAG}"

    url: str = Field(description="Base URL.")
    api_key: SecretStr = Field(description="API key.")

    def get_client(self) -> _ExtraRunnerClient:
        return _ExtraRunnerClient(self.url, self.api_key.get_secret_value())


class NamesWithTestRunner(BlockNames):
    """What adding the runner's field to `BlockNames` gives."""

    testrunner: str | None = Field(default=f"t-testrunner-{TAG}", description="TestRunner")


@pytest.fixture
def extra_runner() -> Iterator[JobRunnerSpec]:
    spec = register_runner(
        JobRunnerSpec("testrunner", block=ExtraRunnerConnection, client=_ExtraRunnerClient)
    )
    try:
        yield spec
    finally:
        unregister_runner(spec.name)


async def test_registering_a_runner_is_enough_for_blocks_setup_connections_and_redaction(
    prefect_harness: str, extra_runner: JobRunnerSpec
) -> None:
    key = f"test-runner-key-{TAG}"
    others: dict[str, Any] = {f: None for f in runner_blocks() if f != extra_runner.names_field}
    names = NamesWithTestRunner(**others)  # only the test's runner is configured
    # remediation-blocks: its kind and variables, saved like any block
    assert extra_runner.secret_fields == ("api_key",)
    env = {
        "REMEDIATION_TESTRUNNER_URL": "http://runner.test",
        "REMEDIATION_TESTRUNNER_API_KEY": key,
    }
    report = await setup_blocks(env, names, only=["testrunner"])
    assert report == [f"created ExtraRunnerConnection {names.testrunner!r} (api_key, url)"]
    # connections: a flow that launches loads it, builds its client, closes it
    assert "testrunner" in runner_blocks()
    async with await open_connections(names, runner_blocks()) as conns:
        client = conns.runner(extra_runner)
        assert isinstance(client, _ExtraRunnerClient) and client.key == key
        assert key in conns.secrets
    assert client.closed
    # redaction: a flow that only reads logs adds its secrets too
    conns = Connections()
    await add_runner_secrets(conns, names)
    assert redact(f"handshake with {key} done", conns.secrets) == "handshake with [REDACTED] done"
