"""The engine: a pipeline instantiated over one stream (the graph), single stages made outside
one, audio files read and written in blocks, PCM bytes in and out, and offline runs. Plain
synchronous code: no trio, no sockets, no storage."""

from . import pcm
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
    "pcm",
    "run_file",
]
