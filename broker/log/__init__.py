"""The storage engine: segmented, mmap-appended, recoverable partition logs.

Public API (see each module's docstring for the details and the why):

* :class:`LogManager` (manager.py): owns a data directory; loads every topic
  at start, creates/deletes topics crash-safely, stores topic configs,
  checkpoints recovery points, writes the clean-shutdown marker.
* :class:`PartitionLog` (partition.py): one partition: ``append``,
  ``wait_durable``, ``read`` (FileSlice for sendfile), ``offset_for_timestamp``,
  retention, flush; the follower primitives of replication (``truncate_to``,
  ``append_as_follower``, the replicated high watermark, ``read(up_to=)``);
  starts with a "how to use" section.
* :class:`LogConfig` (config.py): the per-topic settings, validated.
* The log cleaner of compacted topics: cleaner.py (the file work and its
  crash-safe swap), cleaner_service.py (:class:`LogCleaner`, the broker's
  loop).
* :class:`StorageIO` (storage_io.py): the fault seam for durability syscalls.
* :func:`dump_log` (dump.py): the ``tailrace dump-log`` inspector.

On-disk formats are documented byte by byte in docs/format.md ("Storage").
"""

from .cleaner_service import LogCleaner
from .config import FLUSH_MODES, LogConfig
from .dump import dump_log
from .errors import CorruptLogError, FollowerAppendError, TruncationOffsetError
from .manager import LogManager, TopicInfo, validate_topic_name
from .partition import AppendResult, FileSlice, LogPosition, PartitionLog, TimestampOffset
from .storage_io import CRASH_POINTS, StorageIO

__all__ = [
    "CRASH_POINTS",
    "FLUSH_MODES",
    "AppendResult",
    "CorruptLogError",
    "FileSlice",
    "FollowerAppendError",
    "LogCleaner",
    "LogConfig",
    "LogManager",
    "LogPosition",
    "PartitionLog",
    "StorageIO",
    "TimestampOffset",
    "TopicInfo",
    "TruncationOffsetError",
    "dump_log",
    "validate_topic_name",
]
