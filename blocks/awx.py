"""AWX connection block."""

from __future__ import annotations

from pydantic import Field, SecretStr, model_validator

from blocks.base import RemediationBlock, reveal
from blocks.job_runners import JobRunnerSpec, register_runner
from clients.awx import AWX_STATES, AwxClient
from core.catalog import Runner


class AwxConnection(RemediationBlock):
    """Where AWX (or Ansible Automation Controller) runs remediation job templates.

    Job templates must prompt on launch for limit and variables.

    Example:
        ```python
        from blocks import AwxConnection
        awx = AwxConnection.load("awx").get_client()
        ```
    """

    _block_type_name = "Remediation AWX"
    _block_type_slug = "remediation-awx"
    _description = "AWX API URL and credentials used to launch remediation job templates."

    url: str = Field(description="Base URL of AWX, e.g. https://awx.example.com.")
    token: SecretStr | None = Field(
        default=None, description="OAuth2 personal access token (Authorization: Bearer)."
    )
    username: str | None = Field(default=None, description="User name for basic auth.")
    password: SecretStr | None = Field(default=None, description="Password for basic auth.")
    verify_tls: bool = Field(default=True, description="Verify the server's TLS certificate.")
    timeout_seconds: float = Field(
        default=30.0, gt=0, description="Timeout of every request, in seconds."
    )

    @model_validator(mode="after")
    def _one_way_to_authenticate(self) -> AwxConnection:
        basic = self.username is not None or self.password is not None
        if basic and (self.username is None or self.password is None):
            raise ValueError("username and password go together")
        if self.token is None and not basic:
            raise ValueError("set token, or username and password")
        return self

    def get_client(self) -> AwxClient:
        return AwxClient(
            self.url,
            token=reveal(self.token),
            username=self.username,
            password=reveal(self.password),
            verify=self.verify_tls,
            timeout=self.timeout_seconds,
        )


AWX_RUNNER = register_runner(
    JobRunnerSpec(Runner.AWX.value, block=AwxConnection, client=AwxClient, states=AWX_STATES)
)
