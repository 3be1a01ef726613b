"""Journal lines for the simulated units, pushed to Loki the way Promtail would.

`unit_journal` says what systemd writes when a unit changes state or is restarted;
`LokiPusher` sends lines in Loki's JSON push format
`{"streams":[{"stream":{labels},"values":[["<ns>","line"], ...]}]}`. A push failure is
logged and swallowed: Loki being down must never break the fleet.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping, Sequence

import httpx

log = logging.getLogger("sandbox.fleet")

# (host, unit, lines) for one push
JournalEntry = tuple[str, str, Sequence[str]]


def _failed(unit: str) -> list[str]:
    return [
        f"{unit}: Main process exited, code=exited, status=1/FAILURE",
        f"{unit}: Failed with result 'exit-code'.",
    ]


def _stopped(unit: str) -> list[str]:
    return [f"Stopping {unit}...", f"{unit}: Deactivated successfully.", f"Stopped {unit}."]


def unit_journal(unit: str, old: str | None, new: str | None, restarted: bool) -> list[str]:
    """Journal lines systemd would write for `unit` going from `old` to `new` state."""
    if new is None:
        return []
    if restarted:
        lines = _stopped(unit) if old == "active" else []
        lines.append(f"Starting {unit}...")
        if new == "active":
            return [*lines, f"Started {unit}."]
        return [*lines, *_failed(unit), f"Failed to start {unit}."]
    if old == new:
        return []
    return {
        "failed": _failed(unit),
        "inactive": _stopped(unit),
        "active": [f"Started {unit}."],
        "activating": [f"Starting {unit}..."],
        "deactivating": [f"Stopping {unit}..."],
    }[new]


class LokiPusher:
    """Pushes journal lines for (host, unit) streams to `url` (nothing when it is None)."""

    def __init__(
        self,
        url: str | None,
        *,
        host_label: str = "host",
        unit_label: str = "unit",
        labels: Mapping[str, str] | None = None,
        timeout: float = 2.0,
    ) -> None:
        self.url = url
        self.host_label = host_label
        self.unit_label = unit_label
        self.labels = dict({"job": "systemd-journal"} if labels is None else labels)
        self.timeout = timeout
        self._http: httpx.Client | None = None
        self._lock = threading.Lock()

    def body(self, entries: Sequence[JournalEntry], base_ns: int) -> dict[str, object]:
        """The push body; lines get distinct, increasing timestamps from `base_ns`."""
        streams, n = [], 0
        for host, unit, lines in entries:
            labels = {**self.labels, self.host_label: host, self.unit_label: unit}
            values = []
            for line in lines:
                values.append([str(base_ns + n * 1000), line])
                n += 1
            streams.append({"stream": labels, "values": values})
        return {"streams": streams}

    def push(self, entries: Sequence[JournalEntry]) -> None:
        url = self.url
        if not url or not entries:
            return
        body = self.body(entries, time.time_ns())
        try:
            with self._lock:  # one client, created on first use (an SSL context costs ~40 ms)
                if self._http is None:
                    self._http = httpx.Client(timeout=self.timeout)
                http = self._http
            resp = http.post(f"{url.rstrip('/')}/loki/api/v1/push", json=body)
            if resp.status_code >= 300:
                log.warning("Loki push answered HTTP %s: %s", resp.status_code, resp.text[:200])
        except httpx.HTTPError as exc:
            log.warning("Loki push to %s failed: %s", url, exc)

    def close(self) -> None:
        with self._lock:
            if self._http is not None:
                self._http.close()
                self._http = None
