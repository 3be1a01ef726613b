"""What one simulated host exports, and the linear-counter bookkeeping behind it.

`describe(state)` lists the metric families of node_exporter 1.5 and process-exporter
0.7 (same names, HELP, TYPE and label names) for a `HostState`: gauges carry their
value, counters their rate in units per second. Every metric a registered check reads
(`core.checks.CHECKS`, `CheckSpec.metrics`) is among them; tests/sandbox holds the two
in step.

`HostSim` turns that into scrapeable text. Counters are linear in time
(`base + rate * (now - t_change)`) so `rate()` is exact, and a state change folds the
elapsed time into `base` instead of restarting anything: a counter never goes down,
which is what keeps Prometheus's rates sane (a reset reads as garbage, see
testbed-notes §1). Exposition is the hot path of a 1,000-host scrape, so the text is
rendered by prometheus_client once per distinct state into a `%`-template and a scrape
only substitutes the counter values.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from sandbox.fleet_state import UNIT_STATES, HostState

# Counters start as if every host had been up for a day, like a real fleet.
INITIAL_UPTIME = 86_400.0

CPU_MODES = ("idle", "iowait", "irq", "nice", "softirq", "steal", "system", "user")
# How the busy share of a CPU splits over the non-idle, non-iowait modes.
_BUSY_SPLIT = {"irq": 0.02, "nice": 0.02, "softirq": 0.04, "steal": 0.02, "system": 0.20}
_BUSY_SPLIT["user"] = 1.0 - sum(_BUSY_SPLIT.values())
_PROCESS_USER_SHARE = 0.8
MEMTYPES = ("resident", "virtual", "swapped", "proportionalResident", "proportionalSwapped")

SeriesKey = tuple[str, tuple[str, ...]]  # (metric name, label values)


@dataclass(frozen=True, slots=True)
class Family:
    """One metric family: gauge samples carry values, counter samples rates per second."""

    name: str
    kind: Literal["counter", "gauge"]
    help: str
    label_names: tuple[str, ...]
    samples: tuple[tuple[tuple[str, ...], float], ...]


def describe(state: HostState) -> tuple[Family, ...]:
    """The families one host exports in `state` (everything but `up`)."""
    busy, iowait = state.cpu_busy_pct / 100.0, state.iowait_pct / 100.0
    mode_rate = {"idle": max(0.0, 1.0 - busy - iowait), "iowait": iowait}
    mode_rate.update({mode: busy * share for mode, share in _BUSY_SPLIT.items()})
    cpu = tuple(((str(i), mode), mode_rate[mode]) for i in range(state.cpus) for mode in CPU_MODES)
    mounts = sorted(state.mounts.items())
    fs_labels = [(m.device, m.fstype, point) for point, m in mounts]
    avail = tuple(
        (labels, m.size_bytes * (100.0 - m.used_pct) / 100.0)
        for labels, (_, m) in zip(fs_labels, mounts, strict=True)
    )
    size = tuple(
        (labels, float(m.size_bytes)) for labels, (_, m) in zip(fs_labels, mounts, strict=True)
    )
    units = tuple(
        ((name, s, unit.type), 1.0 if unit.state == s else 0.0)
        for name, unit in sorted(state.units.items())
        for s in UNIT_STATES
    )
    procs = sorted(state.processes.items())
    proc_cpu = tuple(
        sample
        for group, p in procs
        for sample in (
            ((group, "system"), p.cpu_cores * (1 - _PROCESS_USER_SHARE)),
            ((group, "user"), p.cpu_cores * _PROCESS_USER_SHARE),
        )
    )
    proc_mem = tuple(
        ((group, memtype), value)
        for group, p in procs
        for memtype, value in zip(
            MEMTYPES,
            (p.rss_bytes, p.rss_bytes * 4.0, 0.0, p.rss_bytes * 0.9, 0.0),
            strict=True,
        )
    )
    mem_total = float(state.mem_total_bytes)
    return (
        Family(
            "node_cpu_seconds_total",
            "counter",
            "Seconds the CPUs spent in each mode.",
            ("cpu", "mode"),
            cpu,
        ),
        Family(
            "node_filesystem_avail_bytes",
            "gauge",
            "Filesystem space available to non-root users in bytes.",
            ("device", "fstype", "mountpoint"),
            avail,
        ),
        Family(
            "node_filesystem_size_bytes",
            "gauge",
            "Filesystem size in bytes.",
            ("device", "fstype", "mountpoint"),
            size,
        ),
        Family(
            "node_memory_MemAvailable_bytes",
            "gauge",
            "Memory information field MemAvailable_bytes.",
            (),
            (((), mem_total * state.mem_available_pct / 100.0),),
        ),
        Family(
            "node_memory_MemTotal_bytes",
            "gauge",
            "Memory information field MemTotal_bytes.",
            (),
            (((), mem_total),),
        ),
        Family(
            "node_pressure_io_waiting_seconds_total",
            "counter",
            "Total time in seconds that processes have waited due to IO congestion",
            (),
            (((), state.io_pressure),),
        ),
        Family(
            "node_timex_offset_seconds",
            "gauge",
            "Time offset in between local system and reference clock.",
            (),
            (((), state.clock.offset_seconds),),
        ),
        Family(
            "node_timex_sync_status",
            "gauge",
            "Is clock synchronized to a reliable server (1 = yes, 0 = no).",
            (),
            (((), 1.0 if state.clock.synced else 0.0),),
        ),
        Family(
            "node_systemd_unit_state",
            "gauge",
            "Systemd unit",
            ("name", "state", "type"),
            units,
        ),
        Family(
            "namedprocess_namegroup_cpu_seconds_total",
            "counter",
            "Cpu user usage in seconds",
            ("groupname", "mode"),
            proc_cpu,
        ),
        Family(
            "namedprocess_namegroup_memory_bytes",
            "gauge",
            "number of bytes of memory in use",
            ("groupname", "memtype"),
            proc_mem,
        ),
    )


class _Families:
    """A prometheus_client custom collector over precomputed families."""

    def __init__(self, families: tuple[Family, ...]) -> None:
        self._families = families

    def collect(self) -> Iterator[Metric]:
        for fam in self._families:
            cls = CounterMetricFamily if fam.kind == "counter" else GaugeMetricFamily
            metric = cls(fam.name, fam.help, labels=list(fam.label_names))
            for labels, value in fam.samples:
                # Counters get NaN as a placeholder that `_template` turns into `%s`.
                metric.add_metric(list(labels), math.nan if fam.kind == "counter" else value)
            yield metric


@dataclass(frozen=True, slots=True)
class _Layout:
    families: tuple[Family, ...]
    template: str  # exposition text with `%s` where counter values go
    keys: tuple[SeriesKey, ...]  # the counters, in template order
    rates: tuple[float, ...]


_LAYOUTS: dict[str, _Layout] = {}


def _layout(state: HostState) -> _Layout:
    """The exposition layout of `state`, shared by every host in the same state."""
    cache_key = state.model_dump_json(exclude={"down"})
    layout = _LAYOUTS.get(cache_key)
    if layout is None:
        families = describe(state)
        for fam in families:
            if fam.kind == "gauge" and any(math.isnan(v) for _, v in fam.samples):
                raise ValueError(f"{fam.name}: NaN gauge would break the template")
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Families(families))
        text = generate_latest(registry).decode().replace("%", "%%")
        template = text.replace(" NaN\n", " %s\n")
        counters = [
            ((fam.name, labels), rate)
            for fam in families
            if fam.kind == "counter"
            for labels, rate in fam.samples
        ]
        if template.count(" %s\n") != len(counters):
            raise AssertionError("exposition template lost track of the counters")
        layout = _Layout(
            families,
            template,
            tuple(k for k, _ in counters),
            tuple(r for _, r in counters),
        )
        if len(_LAYOUTS) > 4096:  # scenarios are few; this only bounds a runaway loop
            _LAYOUTS.clear()
        _LAYOUTS[cache_key] = layout
    return layout


@dataclass(frozen=True, slots=True)
class Frame:
    """One host between two state changes: read by scrapes without any lock."""

    t: float
    down: bool
    layout: _Layout
    base: tuple[float, ...]  # counter values at `t`, in template order

    def counters(self, at: float) -> list[float]:
        dt = at - self.t
        return [b + r * dt for b, r in zip(self.base, self.layout.rates, strict=True)]

    def exposition(self, at: float) -> str | None:
        """Text-format exposition at time `at`, or None when the host is down."""
        if self.down:
            return None
        return self.layout.template % tuple(self.counters(at))

    @property
    def families(self) -> tuple[Family, ...]:
        return self.layout.families


class HostSim:
    """One host's counters over time; `set_state` is the only way state changes."""

    def __init__(self, state: HostState, at: float) -> None:
        self._acc: dict[SeriesKey, float] = {}
        layout = _layout(state)
        for key, rate in zip(layout.keys, layout.rates, strict=True):
            self._acc[key] = rate * INITIAL_UPTIME
        self.state = state
        self.frame = self._frame(state, layout, at)

    def set_state(self, state: HostState, at: float) -> None:
        """Switch to `state` at time `at`; counters continue from their current values."""
        old = self.frame
        for key, value in zip(old.layout.keys, old.counters(at), strict=True):
            self._acc[key] = value
        self.state = state
        # A series seen for the first time starts at 0 (a new process group); one that
        # comes back (a restarted group) continues where it stopped, never lower.
        self.frame = self._frame(state, _layout(state), at)

    def _frame(self, state: HostState, layout: _Layout, at: float) -> Frame:
        base = tuple(self._acc.get(key, 0.0) for key in layout.keys)
        return Frame(t=at, down=state.down, layout=layout, base=base)
