"""Who may decide a request in a chat channel: ids only (a channel's adapter renders them
as its mentions); below `core.approval` and `core.messages` so both can use it."""

from __future__ import annotations

from core.models import Frozen


class Approvers(Frozen):
    """Who may decide in a chat channel (from the channel's block)."""

    user_ids: list[str] = []
    role_ids: list[str] = []
    any_member: bool = False
