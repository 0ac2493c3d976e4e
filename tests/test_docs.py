"""Documentation stays true: every hook, stage, config key and module of host/ is documented."""

from __future__ import annotations

from pathlib import Path

from legato.registry import new_plugin_manager

DOCS = Path(__file__).resolve().parent.parent / "docs"


def test_every_hook_is_documented() -> None:
    text = (DOCS / "plugins.md").read_text()
    hooks = [name for name in vars(new_plugin_manager().hook) if not name.startswith("_")]
    assert hooks
    for name in hooks:
        assert f"### {name}\n" in text, f"hook {name} is not documented in docs/plugins.md"


def test_stage_reference_is_current() -> None:
    from legato.cli.reference import stage_reference
    from legato.registry import load_registry

    assert (DOCS / "stages.md").read_text() == stage_reference(load_registry()), (
        "docs/stages.md is stale: run `legato plugins --markdown > docs/stages.md`"
    )


def test_every_config_table_key_is_documented() -> None:
    import attrs

    from legato.config.pipelines import PIPELINE_KEYS, TOP_LEVEL_KEYS
    from legato.config.settings import AuthSettings, LibrarySettings, ServerSettings

    text = (DOCS / "pipelines.md").read_text()
    keys = [*TOP_LEVEL_KEYS, *PIPELINE_KEYS]
    keys += [
        f.name for cls in (ServerSettings, LibrarySettings, AuthSettings) for f in attrs.fields(cls)
    ]
    assert [k for k in keys if f"`{k}`" not in text] == []


def test_every_host_module_has_a_room_in_the_architecture() -> None:
    """docs/architecture.md's table names every module of host/: a new module needs a row."""
    import re

    table = (DOCS / "architecture.md").read_text()
    named = set(re.findall(r"`(host/[^`]+)`", table))
    host = DOCS.parent / "host"
    modules = {
        str(path.relative_to(DOCS.parent))
        for path in host.rglob("*")
        if path.suffix in (".py", ".toml", ".html", ".js") and "__pycache__" not in path.parts
    }
    missing = sorted(modules - named)
    assert not missing, f"docs/architecture.md has no row for {', '.join(missing)}"
    gone = sorted(p for p in named if not (DOCS.parent / p).exists())
    assert not gone, f"docs/architecture.md names modules that do not exist: {', '.join(gone)}"
