"""The layers of host/ and the plugins' place, as pyproject.toml's import-linter contracts write
them down: imports go one way, the host imports no plugin, no plugin imports another, no
cycles. import-linter reads source files of one package tree, and an editable install maps
``legato.plugins`` and ``legato.storage_plugins`` from other folders, so the check runs on a
copy of the tree laid out as it is installed."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def installed_layout(target: Path) -> Path:
    """``target/legato`` as a wheel lays it out: host/, with plugins/ and storage/ inside."""
    sources = shutil.ignore_patterns("*.so", "__pycache__", "web", "*.toml", "*.typed")
    package = target / "legato"
    shutil.copytree(ROOT / "host", package, ignore=sources)
    shutil.copytree(ROOT / "plugins", package / "plugins", ignore=sources)
    shutil.copytree(ROOT / "storage", package / "storage_plugins", ignore=sources)
    return package


def lint_imports(tree: Path) -> subprocess.CompletedProcess[str]:
    command = Path(sys.executable).with_name("lint-imports")
    return subprocess.run(
        [str(command), str(ROOT / "pyproject.toml"), "--no-cache"],
        cwd=tree,
        env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_every_import_contract_is_kept(tmp_path: Path) -> None:
    installed_layout(tmp_path)
    done = lint_imports(tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    kept = re.search(r"Contracts: (\d+) kept, 0 broken", done.stdout)
    assert kept and int(kept.group(1)) >= 8, done.stdout


def test_a_host_module_importing_a_plugin_breaks_the_contracts(tmp_path: Path) -> None:
    """The check can fail: the engine reaching into a plugin, and a plugin into the server."""
    package = installed_layout(tmp_path)
    graph = package / "engine" / "graph.py"
    graph.write_text(graph.read_text() + "\nfrom ..plugins import dynamics  # noqa\n")
    stage = package / "plugins" / "pitch_yin" / "stage.py"
    stage.write_text(stage.read_text() + "\nimport legato.server  # noqa\n")
    done = lint_imports(tmp_path)
    assert done.returncode != 0
    assert "legato.engine.graph -> legato.plugins.dynamics" in done.stdout
    assert "legato.plugins.pitch_yin.stage -> legato.server" in done.stdout


def test_old_module_paths_import_the_moved_modules() -> None:
    """Code written before the layers had folders keeps importing what it imported."""
    import importlib

    from legato._moved import MOVED

    for old, new in MOVED.items():
        assert importlib.import_module(old) is importlib.import_module(new), old
    from legato.fingerprints import open_fingerprint_cache  # as docs once showed
    from legato.player import open_player

    assert callable(open_player) and callable(open_fingerprint_cache)
