"""History at once: host-state segments -> OpenMetrics text -> TSDB blocks (promtool).

A live Prometheus needs the full rate window of scrapes before `rate(x[5m])` is right
(testbed-notes §1). Backfilling writes that history up front:

    spike, calm = {"web-01": {"cpu_busy_pct": 95}}, {"web-01": {"cpu_busy_pct": 10}}
    segments = [(170, {}), (10, spike), (180, calm)]
    fleet = backfill_blocks(data_dir, segments, hosts=["web-01", "web-02"], step=1)

Segments run back to back and end at `end` (default: now), so instant queries at "now"
find the data. Each patch is a merge patch applied when its segment starts, on top of
the previous state (like `Fleet.apply_scenario`). The samples come from a real `Fleet`
driven on a virtual clock, so names, labels and linear counters are exactly what a live
scrape shows; the fleet is returned in its final state, and serving it live afterwards
continues every counter without a reset. `up` is written too (0 while a host is down,
when it has no other samples).

OpenMetrics rules that promtool enforces or relies on: HELP/TYPE per family (counter
families named without `_total`), all samples of a series together in time order,
timestamps in seconds, `# EOF` at the end. Families are kept contiguous by writing each
to its own spool file while hosts stream through, so memory stays per host.
"""

from __future__ import annotations

import bisect
import math
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from sandbox.fleet import Fleet, host_names
from sandbox.fleet_metrics import Family, Frame
from sandbox.fleet_state import HostState
from sandbox.prometheus_config import find_binary

# (duration in seconds, {host: merge patch}) applied at the segment's start.
Segment = tuple[float, Mapping[str, Mapping[str, Any]]]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(names: Sequence[str], values: Sequence[str], tail: str) -> str:
    pairs = [f'{n}="{_escape(v)}"' for n, v in zip(names, values, strict=True)]
    return "{" + ",".join([*pairs, tail]) + "}"


class _Spool:
    """One temporary file per metric family, concatenated in order at the end."""

    def __init__(self, directory: Path) -> None:
        self._dir = directory
        self._files: dict[str, tuple[str, str, IO[str]]] = {}  # name -> kind, help, file

    def file(self, name: str, kind: str, help_text: str) -> IO[str]:
        entry = self._files.get(name)
        if entry is None:
            handle = (self._dir / f"{len(self._files):03d}.om").open("w")
            entry = self._files[name] = (kind, help_text, handle)
        return entry[2]

    def write_to(self, out: IO[str]) -> None:
        for name, (kind, help_text, handle) in self._files.items():
            handle.close()
            family = name.removesuffix("_total") if kind == "counter" else name
            out.write(f"# HELP {family} {help_text}\n# TYPE {family} {kind}\n")
            with open(handle.name) as src:
                shutil.copyfileobj(src, out, 1 << 20)
        out.write("# EOF\n")


@dataclass(frozen=True)
class History:
    """Segments played on a virtual clock: which frame every host is in at each sample."""

    fleet: Fleet  # in its final state; serving it live continues every counter
    times: list[float]  # sample timestamps, ascending, the last one at `end`
    segment_of: list[int]  # per sample time: the index of its segment
    frames: list[dict[str, Frame]]  # per segment: every host's counter frame

    def timeline(self, host: str) -> list[tuple[float, Frame]]:
        return [(t, self.frames[j][host]) for t, j in zip(self.times, self.segment_of, strict=True)]


def simulate(
    segments: Sequence[Segment],
    *,
    hosts: Sequence[str] | int,
    defaults: HostState | None = None,
    step: float = 15.0,
    end: float | None = None,
) -> History:
    """Run `segments` back to back so that they end at `end` (default: now)."""
    if step <= 0 or not segments or any(d <= 0 for d, _ in segments):
        raise ValueError("need a positive step and at least one segment of positive duration")
    end = time.time() if end is None else end
    start = end - sum(d for d, _ in segments)
    names = host_names(hosts)
    fleet = Fleet(names, defaults=defaults, started_at=start)
    bounds: list[float] = []
    frames: list[dict[str, Frame]] = []
    t = start
    for duration, patches in segments:
        if patches:
            fleet.apply_scenario(patches, at=t)
        bounds.append(t)
        frames.append({h: fleet.frame(h) for h in names})
        t += duration
    count = int((end - start) / step + 1e-9)
    times = [end - k * step for k in range(count, -1, -1)]
    segment_of = [max(0, bisect.bisect_right(bounds, ts) - 1) for ts in times]
    return History(fleet, times, segment_of, frames)


def write_openmetrics(
    out: IO[str], history: History, hosts: Sequence[str] | None = None, job: str = "node"
) -> None:
    """Write the history of `hosts` (default: all) as one OpenMetrics document."""
    with tempfile.TemporaryDirectory(prefix="backfill-") as spool_dir:
        spool = _Spool(Path(spool_dir))
        up = spool.file("up", "gauge", "1 if the instance is healthy, 0 otherwise.")
        for host in history.fleet.hosts if hosts is None else hosts:
            tail = f'instance="{_escape(host)}",job="{_escape(job)}"'
            _write_host(spool, up, tail, history.timeline(host))
        spool.write_to(out)


def _write_host(spool: _Spool, up: IO[str], tail: str, timeline: list[tuple[float, Frame]]) -> None:
    """Every series of one host, each as one contiguous run of samples."""
    series: dict[tuple[str, tuple[str, ...]], tuple[Family, list[str]]] = {}
    up_lines = []
    for ts, frame in timeline:
        stamp = f"{ts:.3f}"
        up_lines.append(f"up{{{tail}}} {0 if frame.down else 1} {stamp}\n")
        if frame.down:
            continue
        counters = iter(frame.counters(ts))
        for fam in frame.families:
            counter = fam.kind == "counter"
            for labels, value in fam.samples:
                entry = series.get((fam.name, labels))
                if entry is None:
                    entry = series[(fam.name, labels)] = (fam, [])
                v = next(counters) if counter else value
                entry[1].append(f" {v!r} {stamp}\n")
    up.write("".join(up_lines))
    for (name, labels), (fam, samples) in series.items():
        prefix = name + _labels(fam.label_names, labels, tail)
        spool.file(name, fam.kind, fam.help).write(prefix + prefix.join(samples))


def _promtool(promtool: str | None) -> str:
    return promtool or find_binary("promtool")


def _create_blocks_cmd(binary: str, openmetrics: Path, data_dir: Path) -> list[str]:
    return [binary, "tsdb", "create-blocks-from", "openmetrics", str(openmetrics), str(data_dir)]


def create_blocks(openmetrics: Path, data_dir: Path, promtool: str | None = None) -> str:
    """Run `promtool tsdb create-blocks-from openmetrics`; answers its block table."""
    done = subprocess.run(
        _create_blocks_cmd(_promtool(promtool), openmetrics, data_dir),
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"promtool failed ({done.returncode}): {done.stderr[-2000:]}")
    return done.stdout


def backfill_blocks(
    data_dir: Path,
    segments: Sequence[Segment],
    *,
    hosts: Sequence[str] | int,
    defaults: HostState | None = None,
    step: float = 15.0,
    end: float | None = None,
    job: str = "node",
    workdir: Path | None = None,
    shard_hosts: int | None = None,
    parallel: int | None = None,
) -> Fleet:
    """Write `segments` as TSDB blocks into `data_dir` (before Prometheus starts there).

    promtool parses ~0.3 M samples/s on one core and dominates the cost, so hosts go in
    shards of `shard_hosts` (default: about four shards per CPU, at least 250 hosts):
    Python writes shard k+1 while promtool (up to `parallel` at once, default one per
    CPU) turns shard k into blocks. The shards' blocks overlap in
    time, which Prometheus >= 2.39 accepts (and compacts in the background).
    Answers the (unstarted) fleet in its final state.
    """
    binary = _promtool(None)
    history = simulate(segments, hosts=hosts, defaults=defaults, step=step, end=end)
    names = history.fleet.hosts
    limit = max(1, parallel or os.cpu_count() or 1)
    size = shard_hosts or max(250, math.ceil(len(names) / (4 * limit)))
    shards = [names[i : i + size] for i in range(0, len(names), size)]
    running: list[tuple[subprocess.Popen[bytes], Path]] = []

    def finish(proc: subprocess.Popen[bytes], path: Path) -> None:
        _, err = proc.communicate()
        path.unlink(missing_ok=True)
        if proc.returncode != 0:
            raise RuntimeError(f"promtool failed ({proc.returncode}): {err.decode()[-2000:]}")

    with tempfile.TemporaryDirectory(prefix="backfill-om-", dir=workdir) as tmp:
        try:
            for k, shard in enumerate(shards):
                path = Path(tmp) / f"shard-{k:04d}.om"
                with path.open("w") as out:
                    write_openmetrics(out, history, shard, job)
                while len(running) >= limit:
                    finish(*running.pop(0))
                cmd = _create_blocks_cmd(binary, path, Path(data_dir))
                proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                running.append((proc, path))
            while running:
                finish(*running.pop(0))
        finally:
            for proc, _ in running:  # only after a failure: stop our own children
                proc.kill()
                proc.wait()
    return history.fleet
