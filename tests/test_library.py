"""The track library: ids are plain relative paths, and nothing outside the folder is ever
resolved, whatever string a client sends (a hypothesis test over arbitrary ids, with symlinks
pointing in and out of the folder)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from legato.errors import LegatoError
from legato.library.tracks import Library, TrackRefused, UnknownTrack


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
