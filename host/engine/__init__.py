"""The engine: a pipeline instantiated over one stream (the graph), audio files read in blocks,
PCM bytes in and out, and offline runs. Plain synchronous code: no trio, no sockets, no
storage."""

from .files import BLOCK_FRAMES, AudioFile
from .graph import Graph, downmix
from .runner import RunResult, jsonl_sink, run_file

__all__ = [
    "BLOCK_FRAMES",
    "AudioFile",
    "Graph",
    "RunResult",
    "downmix",
    "jsonl_sink",
    "run_file",
]
