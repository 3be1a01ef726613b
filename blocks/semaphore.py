"""Semaphore UI connection block."""

from __future__ import annotations

from pydantic import Field, SecretStr

from blocks.base import RemediationBlock, reveal
from blocks.job_runners import JobRunnerSpec, register_runner
from clients.semaphore import SEMAPHORE_STATES, SemaphoreClient
from core.catalog import Runner


class SemaphoreConnection(RemediationBlock):
    """Where Semaphore UI runs remediation task templates.

    Example:
        ```python
        from blocks import SemaphoreConnection
        semaphore = SemaphoreConnection.load("semaphore").get_client()
        ```
    """

    _block_type_name = "Remediation Semaphore"
    _block_type_slug = "remediation-semaphore"
    _description = "Semaphore UI API URL, token and project used to start remediation tasks."

    url: str = Field(description="Base URL of Semaphore UI, e.g. https://semaphore.example.com.")
    api_token: SecretStr = Field(description="API token (Authorization: Bearer).")
    project_id: int = Field(gt=0, description="Id of the Semaphore project holding the templates.")
    verify_tls: bool = Field(default=True, description="Verify the server's TLS certificate.")
    timeout_seconds: float = Field(
        default=30.0, gt=0, description="Timeout of every request, in seconds."
    )

    def get_client(self) -> SemaphoreClient:
        return SemaphoreClient(
            self.url,
            token=reveal(self.api_token) or "",
            project_id=self.project_id,
            verify=self.verify_tls,
            timeout=self.timeout_seconds,
        )


SEMAPHORE_RUNNER = register_runner(
    JobRunnerSpec(
        Runner.SEMAPHORE.value,
        block=SemaphoreConnection,
        client=SemaphoreClient,
        states=SEMAPHORE_STATES,
    )
)
