"""The track library: ids are plain relative paths, and nothing outside the folder is ever
resolved, whatever string a client sends (a hypothesis test over arbitrary ids, with symlinks
pointing in and out of the folder); its fingerprints come from whatever stage type declares a
fingerprinter in the registry, and without one tracks fall back saying why."""

from __future__ import annotations

import json
import os
import types
from collections.abc import Callable
from pathlib import Path

import attrs
import numpy as np
import pytest
import soundfile as sf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from legato import hookimpl
from legato.errors import LegatoError
from legato.library.fingerprinter import find_fingerprinter
from legato.library.fingerprints import open_fingerprint_cache
from legato.library.sidecar import sidecar_path
from legato.library.tracks import Library, TrackRefused, UnknownTrack
from legato.registry import Registry, add_plugin
from legato.stage import Event, Fingerprinter, OutputSpec, StageType, StreamFormat
from legato.storage import FINGERPRINT_VALUES


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """outside/secret.wav, and lib/ with a.wav, sub/b.wav, links in and out, a loop."""
    base = tmp_path_factory.mktemp("library")
    (base / "outside").mkdir()
    (base / "outside" / "secret.wav").write_bytes(b"x")
    lib = base / "lib"
    (lib / "sub").mkdir(parents=True)
    (lib / "a.wav").write_bytes(b"a")
    (lib / "sub" / "b.wav").write_bytes(b"b")
    (lib / "in.wav").symlink_to(lib / "sub" / "b.wav")
    (lib / "out.wav").symlink_to(base / "outside" / "secret.wav")
    (lib / "outdir").symlink_to(base / "outside")
    (lib / "loop").symlink_to(lib / "loop")
    return lib


def test_relative_paths_inside_resolve(tree: Path) -> None:
    library = Library(tree)
    assert library.resolve("a.wav") == tree / "a.wav"
    assert library.resolve("sub/b.wav") == tree / "sub" / "b.wav"
    assert library.resolve("./sub//b.wav") == tree / "sub" / "b.wav"
    assert library.resolve("in.wav") == tree / "sub" / "b.wav"


@pytest.mark.parametrize(
    ("track", "error", "says"),
    [
        ("../outside/secret.wav", TrackRefused, "'..'"),
        ("sub/../a.wav", TrackRefused, "'..'"),
        ("/etc/passwd", TrackRefused, "absolute"),
        ("sub\\b.wav", TrackRefused, "backslash"),
        ("a.wav\x00.txt", TrackRefused, "NUL"),
        ("", TrackRefused, "empty"),
        ("x" * 5000, TrackRefused, "longer than"),
        ("out.wav", TrackRefused, "outside the library"),
        ("outdir/secret.wav", TrackRefused, "outside the library"),
        ("missing.wav", UnknownTrack, "no such file"),
        ("sub", UnknownTrack, "not a file"),
        ("loop", UnknownTrack, "loop"),
    ],
)
def test_what_is_refused_and_why(tree: Path, track: str, error: type, says: str) -> None:
    with pytest.raises(error) as info:
        Library(tree).resolve(track)
    assert says in str(info.value)
    assert str(tree.parent) not in str(info.value)


def test_the_folder_must_exist(tmp_path: Path) -> None:
    with pytest.raises(LegatoError, match="No such file"):
        Library(tmp_path / "nope")
    (tmp_path / "file").write_text("")
    with pytest.raises(LegatoError, match="not a folder"):
        Library(tmp_path / "file")


PARTS = st.sampled_from(
    ["..", ".", "", "a.wav", "sub", "b.wav", "out.wav", "outdir", "secret.wav", "loop", "/"]
)


@settings(max_examples=400, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    ids=st.one_of(
        st.lists(PARTS, min_size=1, max_size=6).map("/".join),
        st.text(max_size=40),
    )
)
def test_no_id_resolves_outside_the_folder(tree: Path, ids: str) -> None:
    library = Library(tree)
    try:
        resolved = library.resolve(ids)
    except (TrackRefused, UnknownTrack):
        return
    assert resolved.is_relative_to(tree)
    assert resolved.is_file()
    assert os.path.realpath(resolved) == str(resolved)


# ---- the fingerprinter is found through the registry -------------------------------------


def _toy_fingerprinter(names: tuple[str, ...]) -> StageType:
    """A third party's fingerprinter: the mean and peak of the first channel, repeated."""

    class Toy:
        def __init__(self, params: object, fmt: StreamFormat) -> None:
            self.total, self.count, self.peak = 0.0, 0, 0.0

        def process(self, block: np.ndarray) -> list[Event]:
            column = np.asarray(block, dtype=np.float64)[:, 0]
            self.total += float(column.sum())
            self.count += len(column)
            self.peak = max(self.peak, float(np.abs(column).max(initial=0.0)))
            return []

        def finish(self) -> list[Event]:
            values = ([self.total / max(self.count, 1), self.peak] * len(names))[: len(names)]
            return [{"kind": "fingerprint", "sample": self.count, "values": values}]

    @attrs.frozen
    class NoParams:
        pass

    return StageType(
        name="toy_fingerprint",
        doc="toy",
        params=NoParams,
        create=Toy,
        outputs=(OutputSpec("fingerprint", "toy", "end", {"values": ""}),),
        input="multichannel",
        fingerprinter=Fingerprinter(version=7, names=names, measures={"crest_db": names[1]}),
    )


def _tone(path: Path, seconds: float = 0.5) -> Path:
    t = np.arange(int(seconds * 8000)) / 8000
    sf.write(path, (0.5 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), 8000)
    return path


async def test_any_fingerprint_plugin_serves_the_library(tmp_path: Path) -> None:
    toy = _toy_fingerprinter(tuple(f"d{i}" for i in range(FINGERPRINT_VALUES)))
    song = _tone(tmp_path / "song.wav")
    async with open_fingerprint_cache(None, fingerprinter=toy) as cache:
        generated = await cache.lookup(song)
        again = await cache.lookup(song)
    assert generated.tier == "generated" and again.tier == "sidecar"
    assert generated.fingerprint is not None and generated.fingerprint.version == 7
    assert generated.fingerprint["d1"] == pytest.approx(0.5, abs=1e-3)
    assert generated.fingerprint.measured() == {"crest_db": generated.fingerprint["d1"]}
    on_disk = json.loads(sidecar_path(song).read_text())
    assert on_disk["version"] == 7 and on_disk["names"][:2] == ["d0", "d1"]
    async with open_fingerprint_cache(None) as default:  # another algorithm: not trusted
        other = await default.lookup(song)
    assert other.tier == "generated" and "algorithm version 7" in other.reason


async def test_without_a_fingerprinter_tracks_fall_back_saying_why(tmp_path: Path) -> None:
    song = _tone(tmp_path / "song.wav")
    async with open_fingerprint_cache(None, fingerprinter="no_such_stage") as cache:
        result = await cache.lookup(song)
    assert result.tier == "fallback" and result.fingerprint is None
    assert "fingerprint stage 'no_such_stage' is not installed" in result.reason
    assert not sidecar_path(song).exists()


def test_a_broken_fingerprint_plugin_is_named() -> None:
    broken = types.ModuleType("broken_fingerprints")
    broken.LEGATO_API_VERSION = 1  # type: ignore[attr-defined]

    @hookimpl
    def register_stages(register: Callable[[StageType], None]) -> None:
        raise RuntimeError("kernel missing")

    broken.register_stages = register_stages  # type: ignore[attr-defined]
    registry = Registry()
    add_plugin(registry, "fingerprint25d", broken)
    with pytest.raises(LegatoError) as caught:
        find_fingerprinter(registry)
    assert "no installed stage type fingerprints tracks" in str(caught.value)
    assert "fingerprint25d" in str(caught.value) and "kernel missing" in str(caught.value)
