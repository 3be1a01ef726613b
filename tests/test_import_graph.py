"""No import cycle among the product modules, and the layers import only downwards: lazy
imports inside functions included (a cycle or a shortcut hidden in a function body still
ties the two modules together).

Layers (docs/architecture.md): `core` is pure (no I/O library, nothing of the project
above it); `clients` and `tasks` never reach up into `flows`; `flows` orchestrate and
reach I/O only through `tasks` — from `clients` only the typed errors, and no Prefect API
client, deployment runs or Variables of their own.
"""

from __future__ import annotations

import ast
from collections.abc import Callable
from pathlib import Path

from channels.registry import CHANNELS

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("core", "clients", "blocks", "channels", "tasks", "flows")


def _module(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts)


def product_modules() -> set[str]:
    return {_module(p) for pkg in PACKAGES for p in (ROOT / pkg).glob("*.py")}


def imports_of(name: str) -> set[str]:
    """Every name `name` imports, anywhere in the file: `import a.b` gives a.b, `from a.b
    import c` gives a.b and a.b.c (c may be a module or a name in it)."""
    tree = ast.parse((ROOT / (name.replace(".", "/") + ".py")).read_text())
    deps: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            deps |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            deps |= {a.name for a in node.names}
    return deps


def import_graph() -> dict[str, set[str]]:
    modules = product_modules()
    return {name: {d for d in imports_of(name) if d in modules and d != name} for name in modules}


def cycle_from(graph: dict[str, set[str]], start: str) -> list[str] | None:
    """A path start → … → start, if there is one (depth-first)."""
    stack, seen = [(start, [start])], set()
    while stack:
        node, path = stack.pop()
        for dep in graph[node]:
            if dep == start:
                return [*path, start]
            if dep not in seen:
                seen.add(dep)
                stack.append((dep, [*path, dep]))
    return None


def test_the_graph_sees_the_flows_imports() -> None:
    graph = import_graph()
    assert "flows.remediate_action" in graph["flows.reconciler"]  # a lazy import counts
    assert "tasks.heartbeat" in graph["flows.remediate_action"]


def test_no_product_module_imports_itself_back() -> None:
    graph = import_graph()
    cycles = [c for m in sorted(graph) if (c := cycle_from(graph, m))]
    assert not cycles, "\n".join(" -> ".join(c) for c in cycles)


# --- layering ----------------------------------------------------------------------------------
def _under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def violations(package: str, forbidden: Callable[[str], bool]) -> list[str]:
    """`module imports name` for every forbidden import of a module in `package`."""
    return [
        f"{module} imports {dep}"
        for module in sorted(m for m in product_modules() if _under(m, package))
        for dep in sorted(imports_of(module))
        if forbidden(dep)
    ]


# I/O libraries core never touches (pydantic and the standard library's pure parts are fine)
IO_LIBRARIES = (
    "httpx",
    "sqlalchemy",
    "prefect",
    "anthropic",
    "discord",
    "slack_sdk",
    "aiohttp",
    "aiosqlite",
    "asyncpg",
)
# Prefect's own API client, deployment runs and Variables: PrefectRuns's, reached through tasks
PREFECT_API = ("prefect.deployments", "prefect.variables", "prefect.get_client")


def _flow_forbidden(dep: str) -> bool:
    if _under(dep, "clients"):
        return not _under(dep, "clients.errors")  # typed errors are caught in flows
    return dep.startswith("prefect.client") or any(_under(dep, p) for p in PREFECT_API)


def test_flows_reach_clients_only_through_tasks_except_typed_errors() -> None:
    assert not (found := violations("flows", _flow_forbidden)), "\n".join(found)


def test_core_imports_no_other_layer_and_no_io_library() -> None:
    layers = ("clients", "channels", "tasks", "flows", "blocks", *IO_LIBRARIES)
    found = violations("core", lambda dep: any(_under(dep, p) for p in layers))
    assert not found, "\n".join(found)


def test_tasks_and_clients_never_import_flows() -> None:
    found = [
        *violations("tasks", lambda dep: _under(dep, "flows")),
        *violations("clients", lambda dep: _under(dep, "flows")),
    ]
    assert not found, "\n".join(found)


def test_clients_import_no_project_layer_but_core() -> None:
    above = ("tasks", "flows", "blocks", "channels")
    found = violations("clients", lambda dep: any(_under(dep, p) for p in above))
    assert not found, "\n".join(found)


def test_chat_adapters_never_import_tasks_or_flows() -> None:
    found = violations("channels", lambda dep: _under(dep, "tasks") or _under(dep, "flows"))
    assert not found, "\n".join(found)


def test_tasks_reach_a_chat_channel_only_through_its_adapter() -> None:
    # tasks post through tasks.chat and the ChatChannel port, never a channel's own
    # client or block; flows do not even import the port
    own = (
        "clients.discord",
        "blocks.discord",
        "channels.discord",
        "clients.slack",
        "blocks.slack",
        "channels.slack",
    )
    found = [
        *violations("tasks", lambda dep: any(_under(dep, p) for p in own)),
        *violations("flows", lambda dep: _under(dep, "channels")),
    ]
    assert not found, "\n".join(found)


def test_flows_name_no_chat_channel() -> None:
    named = [
        f"{p.name}:{n}"
        for p in sorted((ROOT / "flows").glob("*.py"))
        for n, line in enumerate(p.read_text().splitlines(), 1)
        if any(channel.name in line.lower() for channel in CHANNELS)
    ]
    assert not named, "\n".join(named)


def test_the_layering_rules_see_lazy_and_aliased_imports() -> None:
    # the checks above would pass vacuously if imports_of missed these shapes
    assert "tasks.cycle" in imports_of("flows.remediation_cycle")
    assert "flows.remediate_action" in imports_of("flows.dispatch")  # inside a function
    assert _flow_forbidden("prefect.client.orchestration")
    assert _flow_forbidden("prefect.get_client") and _flow_forbidden("clients.ledger.Ledger")
    assert not _flow_forbidden("clients.errors.UpstreamError")
    assert not _flow_forbidden("prefect.context")


# Discord's own markup: its timestamps `<t:…:R>`, its mentions `<@…>`, and its embed models;
# Slack's special mentions and dates `<!…>` too.
DISCORD_MARKUP = ("<t:", "<@", "<!")
EMBED_MODELS = {"Embed", "EmbedField", "FallbackEmbed"}


def discord_markup_in(path: Path) -> list[str]:
    """String literals (f-string parts included, docstrings not) holding Discord markup,
    and calls constructing an embed model, in one file."""
    tree = ast.parse(path.read_text())
    docstrings = {
        id(n.body[0].value)
        for n in ast.walk(tree)
        if isinstance(n, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and n.body
        and isinstance(n.body[0], ast.Expr)
        and isinstance(n.body[0].value, ast.Constant)
    }
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            if id(node) not in docstrings and any(m in node.value for m in DISCORD_MARKUP):
                found.append(f"{path.name}:{node.lineno}: {node.value!r}")
        elif isinstance(node, ast.Call):
            f = node.func
            name = (
                f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""
            )
            if name in EMBED_MODELS:
                found.append(f"{path.name}:{node.lineno}: {name}(")
    return found


def test_core_builds_no_discord_markup() -> None:
    # core says what to tell people; the channel's adapter (channels/) renders it
    found = [m for p in sorted((ROOT / "core").glob("*.py")) for m in discord_markup_in(p)]
    assert not found, "\n".join(found)


def test_the_markup_rule_sees_timestamps_mentions_and_embeds() -> None:
    # not vacuous: the Discord renderer has all three
    found = "\n".join(discord_markup_in(ROOT / "channels" / "discord_render.py"))
    assert "'<t:" in found and "'<@" in found and "Embed(" in found and "EmbedField(" in found


def test_an_action_run_starts_without_the_slack_sdk() -> None:
    """A suspended approval comes back in a new process: slack_sdk and aiohttp (about
    0.3 s of imports) load only where a Slack client is built, not in every run's start."""
    import subprocess
    import sys

    probe = (
        "import sys, flows.remediate_action, flows.remediation_cycle, flows.approval_listener;"
        "print(sorted(m for m in ('slack_sdk', 'aiohttp') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"
