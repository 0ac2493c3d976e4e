"""Records: what sessions and offline runs leave behind. The recorder batches records off the
audio path into a storage plugin, the spool keeps them on disk through an outage, and the
practice summary scores a performance from its events."""

from .practice import PracticeSummary
from .recorder import Recorder, RecorderSettings, Tally
from .spool import Spool, SpoolError

__all__ = ["PracticeSummary", "Recorder", "RecorderSettings", "Spool", "SpoolError", "Tally"]
