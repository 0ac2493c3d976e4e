"""Pipeline configuration: a TOML file of named pipelines, each a DAG of stages (Vector-shaped:
stages are tables keyed by id, edges declared on the consumer with ``inputs``).

Everything is validated at load time and every problem is reported at once, each naming the
exact key path and, where the file has it, the line.
"""

from __future__ import annotations

import difflib
import re
import tomllib
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import attrs

from ..errors import LegatoError
from ..registry import Registry
from ..stage import StageType
from ..storage import DEFAULT_URL, Storage, StorageError, open_storage, scheme_of
from .params import ParamsInvalid, build_params, structure
from .settings import AuthSettings, LibrarySettings, ServerSettings
from .tomlpos import key_lines, line_of

SOURCE = "audio"
"""The input name that stands for a session's (or file's) incoming audio."""

T = TypeVar("T")

SOURCES = (SOURCE, "library")
"""Where a pipeline's audio comes from: the client (live sessions, files) or a library track
(playback sessions, whose ``output`` stage's audio is streamed back)."""

TOP_LEVEL_KEYS = ("pipelines", "server", "storage", "library", "auth")
PIPELINE_KEYS = ("doc", "stages", "source", "output")
STAGE_KEYS = ("type", "inputs")


@attrs.frozen
class ConfigIssue:
    """One problem: the dotted key path it concerns, what is wrong, and the line if known."""

    path: str
    message: str
    line: int | None = None

    def render(self, filename: str) -> str:
        where = f"{filename}:{self.line}" if self.line else filename
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class ConfigError(LegatoError):
    """A config that cannot be used; ``issues`` lists every problem found."""

    def __init__(self, filename: str, issues: list[ConfigIssue]) -> None:
        self.filename = filename
        self.issues = issues
        super().__init__("\n".join(issue.render(filename) for issue in issues))


@attrs.frozen
class StageConfig:
    id: str
    type: StageType
    inputs: tuple[str, ...]
    params: Any


@attrs.frozen
class Pipeline:
    """A validated pipeline; ``stages`` is in topological order (inputs before consumers).
    ``source`` is ``audio`` (the client sends it) or ``library`` (a track is played: ``output``
    names the stage whose audio the client receives)."""

    name: str
    doc: str
    stages: tuple[StageConfig, ...]
    source: str = SOURCE
    output: str | None = None

    @property
    def plays_tracks(self) -> bool:
        return self.source == "library"


@attrs.frozen
class StorageConfig:
    """The ``[storage]`` table: a database URL and the chosen backend's typed params (None
    when the table does not set any: the backend's defaults)."""

    url: str = DEFAULT_URL
    params: Any = None

    def open(self, registry: Registry, url: str | None = None) -> Storage:
        """The storage for ``url`` (a ``--db`` override) or this table's URL; the table's
        params apply when they belong to the backend the URL selects."""
        return open_storage(url or self.url, registry, self.params)


@attrs.frozen
class Config:
    source: str
    pipelines: Mapping[str, Pipeline]
    server: ServerSettings = attrs.field(factory=ServerSettings)
    storage: StorageConfig = attrs.field(factory=StorageConfig)
    library: LibrarySettings = attrs.field(factory=LibrarySettings)
    auth: AuthSettings = attrs.field(factory=AuthSettings)

    def pipeline(self, name: str) -> Pipeline:
        try:
            return self.pipelines[name]
        except KeyError:
            raise LegatoError(
                f"unknown pipeline {name!r} in {self.source}{_suggest(name, self.pipelines)}"
                f" (pipelines: {', '.join(self.pipelines) or 'none'})"
            ) from None


def _suggest(name: str, options: Any) -> str:
    close = difflib.get_close_matches(name, list(options), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def _dotted(*parts: str) -> str:
    return ".".join(p if p.replace("_", "").replace("-", "").isalnum() else f'"{p}"' for p in parts)


class _Checker:
    """Collects issues while walking the parsed document."""

    def __init__(self, source_text: str, registry: Registry) -> None:
        self.lines = key_lines(source_text)
        self.registry = registry
        self.issues: list[ConfigIssue] = []

    def issue(self, path: tuple[str, ...], message: str) -> None:
        self.issues.append(ConfigIssue(_dotted(*path), message, line_of(self.lines, path)))

    def unknown_keys(self, table: Mapping[str, Any], allowed: tuple[str, ...], at: tuple[str, ...]):
        for key in table:
            if key not in allowed:
                self.issue(at + (key,), f"unknown key{_suggest(key, allowed)}")

    def settings(self, name: str, cls: type[T], table: Any) -> T:
        """A settings table (``[server]``, ``[library]``, ``[auth]``) as ``cls``; its defaults
        when absent."""
        if table is None:
            return cls()
        if not isinstance(table, dict):
            self.issue((name,), "must be a table of settings")
            return cls()
        try:
            settings = structure(cls, table, f"[{name}]")
        except ParamsInvalid as exc:
            for err in exc.errors:
                self.issue((name,) + ((err.key,) if err.key else ()), err.message)
            return cls()
        problems = getattr(settings, "problems", None)
        for key, message in problems() if problems is not None else ():
            self.issue((name, key), message)
        return settings

    def storage(self, table: Any) -> StorageConfig:
        if table is None:
            return StorageConfig()
        if not isinstance(table, dict):
            self.issue(("storage",), 'must be a table, e.g. url = "sqlite:///legato.db"')
            return StorageConfig()
        url = table.get("url", DEFAULT_URL)
        if not isinstance(url, str):
            self.issue(("storage", "url"), "must be a database URL string")
            return StorageConfig()
        try:
            backend = self.registry.storage_for_scheme(scheme_of(url))
        except StorageError as exc:
            self.issue(("storage", "url"), str(exc))
            return StorageConfig()
        if backend is None:
            known = sorted(s for t in self.registry.storage.values() for s in t.schemes)
            self.issue(
                ("storage", "url"),
                f"no storage backend handles {scheme_of(url)!r} URLs"
                f" (installed: {', '.join(known) or 'none'})",
            )
            return StorageConfig()
        raw = {k: v for k, v in table.items() if k != "url"}
        try:
            params = structure(backend.params, raw, f"storage backend {backend.name!r}")
        except ParamsInvalid as exc:
            for err in exc.errors:
                self.issue(("storage",) + ((err.key,) if err.key else ()), err.message)
            return StorageConfig()
        return StorageConfig(url=url, params=params)

    def config(self, doc: Mapping[str, Any]) -> dict[str, Pipeline]:
        self.unknown_keys(doc, TOP_LEVEL_KEYS, ())
        pipelines = doc.get("pipelines")
        if not isinstance(pipelines, dict) or not pipelines:
            self.issue(("pipelines",), "define at least one pipeline, e.g. [pipelines.analyze]")
            return {}
        result = {}
        for name, table in pipelines.items():
            pipeline = self.pipeline(name, table)
            if pipeline is not None:
                result[name] = pipeline
        return result

    def pipeline(self, name: str, table: Any) -> Pipeline | None:
        at = ("pipelines", name)
        if not isinstance(table, dict):
            self.issue(at, "must be a table of stages")
            return None
        self.unknown_keys(table, PIPELINE_KEYS, at)
        doc = table.get("doc", "")
        if not isinstance(doc, str):
            self.issue(at + ("doc",), "must be a string")
        stages_table = table.get("stages")
        if not isinstance(stages_table, dict) or not stages_table:
            self.issue(
                at + ("stages",), "define at least one stage, e.g. [pipelines.NAME.stages.ID]"
            )
            return None
        before = len(self.issues)
        stages = {}
        for stage_id, stage_table in stages_table.items():
            stage = self.stage(at + ("stages", stage_id), stage_id, stage_table)
            if stage is not None:
                stages[stage_id] = stage
        ordered = self.graph(at, stages, set(stages_table))
        if len(self.issues) > before or ordered is None:
            return None
        source, output = self.source_and_output(at, table, ordered)
        if len(self.issues) > before:
            return None
        return Pipeline(
            name=name,
            doc=doc if isinstance(doc, str) else "",
            stages=ordered,
            source=source,
            output=output,
        )

    def source_and_output(
        self, at: tuple[str, ...], table: Mapping[str, Any], stages: tuple[StageConfig, ...]
    ) -> tuple[str, str | None]:
        """The pipeline's ``source``, and for a library pipeline the stage whose audio is
        played: ``output``, or by default the last stage producing audio."""
        source = table.get("source", SOURCE)
        if source not in SOURCES:
            options = " or ".join(repr(s) for s in SOURCES)
            self.issue(at + ("source",), f"must be {options}, got {source!r}")
            return SOURCE, None
        output = table.get("output")
        if source != "library":
            if output is not None:
                self.issue(at + ("output",), 'only a pipeline with source = "library" plays audio')
            return source, None
        audio_stages = [s.id for s in stages if s.type.produces_audio]
        if output is None:
            if not audio_stages:
                self.issue(
                    at + ("stages",),
                    "a library pipeline plays the audio of a stage that produces audio (such as"
                    " lwrp_master); it has none",
                )
                return source, None
            return source, audio_stages[-1]
        if not isinstance(output, str) or output not in audio_stages:
            self.issue(
                at + ("output",),
                f"must name a stage of this pipeline that produces audio"
                f" ({', '.join(audio_stages) or 'it has none'}), got {output!r}",
            )
            return source, None
        return source, output

    def stage(self, at: tuple[str, ...], stage_id: str, table: Any) -> StageConfig | None:
        if stage_id == SOURCE:
            self.issue(at, f"{SOURCE!r} is reserved for the incoming audio; choose another id")
            return None
        if not isinstance(table, dict):
            self.issue(at, "must be a table with at least `type` and `inputs`")
            return None
        type_name = table.get("type")
        stage_type = None
        if not isinstance(type_name, str):
            self.issue(at + ("type",), 'missing: every stage needs `type = "<stage type>"`')
        elif type_name not in self.registry.stages:
            known = ", ".join(sorted(self.registry.stages)) or "none"
            failed = [p.name for p in self.registry.plugins if p.error]
            broken = (
                f"; plugins that failed to load: {', '.join(failed)} (see `legato plugins`)"
                if failed
                else ""
            )
            self.issue(
                at + ("type",),
                f"unknown stage type {type_name!r}{_suggest(type_name, self.registry.stages)}"
                f" (installed: {known}{broken})",
            )
        else:
            stage_type = self.registry.stages[type_name]
        inputs = table.get("inputs")
        if not isinstance(inputs, list) or not all(isinstance(i, str) for i in inputs):
            self.issue(at + ("inputs",), f'must be a list of input names, e.g. ["{SOURCE}"]')
            inputs = None
        elif len(inputs) != 1:
            self.issue(at + ("inputs",), f"takes exactly one input, got {len(inputs)}")
            inputs = None
        if stage_type is None or inputs is None:
            return None
        raw = {k: v for k, v in table.items() if k not in STAGE_KEYS}
        try:
            params = build_params(stage_type, raw)
        except ParamsInvalid as exc:
            for err in exc.errors:
                self.issue(at + ((err.key,) if err.key else ()), err.message)
            return None
        return StageConfig(id=stage_id, type=stage_type, inputs=tuple(inputs), params=params)

    def graph(
        self, at: tuple[str, ...], stages: dict[str, StageConfig], declared: set[str]
    ) -> tuple[StageConfig, ...] | None:
        ok = True
        for stage in stages.values():
            for index, name in enumerate(stage.inputs):
                where = at + ("stages", stage.id, "inputs")
                if name == SOURCE:
                    continue
                if name not in declared:
                    self.issue(
                        where,
                        f"input {index} names {name!r}, which is neither {SOURCE!r} nor a stage "
                        f"of this pipeline{_suggest(name, [*declared, SOURCE])}",
                    )
                    ok = False
                elif name in stages and not stages[name].type.produces_audio:
                    self.issue(
                        where,
                        f"incompatible formats: {stage.type.name} consumes audio, but {name!r} "
                        f"({stages[name].type.name}) produces only events",
                    )
                    ok = False
        if not ok:
            return None
        return self.topological(at, stages)

    def topological(
        self, at: tuple[str, ...], stages: dict[str, StageConfig]
    ) -> tuple[StageConfig, ...] | None:
        order: list[StageConfig] = []
        state: dict[str, int] = {}  # 1 = visiting, 2 = done

        def visit(stage_id: str, trail: list[str]) -> bool:
            if state.get(stage_id) == 2:
                return True
            if state.get(stage_id) == 1:
                cycle = [*trail[trail.index(stage_id) :], stage_id]
                self.issue(at + ("stages", stage_id, "inputs"), "cycle: " + " -> ".join(cycle))
                return False
            state[stage_id] = 1
            for name in stages[stage_id].inputs:
                if name in stages and not visit(name, [*trail, stage_id]):
                    return False
            state[stage_id] = 2
            order.append(stages[stage_id])
            return True

        for stage_id in stages:
            if not visit(stage_id, []):
                return None
        return tuple(order)


def parse_config(text: str, source: str, registry: Registry) -> Config:
    """Parse and validate config text; ``source`` names it in messages."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        where = re.search(r"\(at line (\d+), column \d+\)", str(exc))
        line = int(where.group(1)) if where else None
        raise ConfigError(source, [ConfigIssue("", f"invalid TOML: {exc}", line)]) from None
    checker = _Checker(text, registry)
    pipelines = checker.config(doc)
    server = checker.settings("server", ServerSettings, doc.get("server"))
    storage = checker.storage(doc.get("storage"))
    library = checker.settings("library", LibrarySettings, doc.get("library"))
    auth = checker.settings("auth", AuthSettings, doc.get("auth"))
    if auth.secret_file and auth.secret_env:
        checker.issue(("auth", "secret_env"), "give secret_file or secret_env, not both")
    if auth.public_key_file and (auth.secret_file or auth.secret_env):
        checker.issue(("auth", "public_key_file"), "give a secret or a public key, not both")
    if checker.issues:
        raise ConfigError(source, checker.issues)
    return Config(
        source=source,
        pipelines=pipelines,
        server=server,
        storage=storage,
        library=library,
        auth=auth,
    )


def load_config(path: str | Path | None, registry: Registry) -> Config:
    """Load a config file, or the default config shipped with legato when ``path`` is None."""
    if path is None:
        text = resources.files("legato.config").joinpath("default.toml").read_text(encoding="utf-8")
        return parse_config(text, "<default config>", registry)
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise LegatoError(f"{path}: config file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise LegatoError(f"{path}: cannot read config: {exc}") from None
    return parse_config(text, str(path), registry)
