"""Documentation stays true: every hook is documented."""

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
    from legato.config.settings import LibrarySettings, ServerSettings

    text = (DOCS / "pipelines.md").read_text()
    keys = [*TOP_LEVEL_KEYS, *PIPELINE_KEYS]
    keys += [f.name for cls in (ServerSettings, LibrarySettings) for f in attrs.fields(cls)]
    assert [k for k in keys if f"`{k}`" not in text] == []
