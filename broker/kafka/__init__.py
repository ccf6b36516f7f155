"""The Kafka front-end: Kafka's wire protocol over the broker's services.

* :mod:`.codec`: framing and kio message schemas (sans-I/O, no trio);
* :mod:`.versions`: the one table of advertised APIs and versions;
* :mod:`.errors`: BrokerError -> Kafka wire codes;
* :mod:`.handlers`: the handler table and dispatcher, over :mod:`.admin`
  (ApiVersions, Metadata, topics) and :mod:`.data` (Produce, Fetch,
  ListOffsets, InitProducerId), :mod:`.log_bounds` (DeleteRecords,
  OffsetForLeaderEpoch), :mod:`.copy_budget` (the bound on down-converted
  fetch bytes) and :mod:`.groups` (the consumer-group APIs
  over the coordinator's classic groups).

See docs/kafka.md.
"""

import sys

if "hypothesis" not in sys.modules:
    # kio registers Hypothesis strategies for its types whenever Hypothesis
    # is importable (kio/static/_phantom.py tries `import hypothesis.strategies`).
    # The broker never uses them, and importing Hypothesis for them cost every
    # broker start-up, the pytest plugin's included, about 0.25 s
    # (docs/testing.md). A None entry makes that optional import fail at once;
    # it is removed again as soon as kio's base types are loaded, so a later
    # `import hypothesis` anywhere in the process works as usual.
    sys.modules["hypothesis"] = None  # type: ignore[assignment]
    try:
        import kio.static.primitive  # noqa: F401
    finally:
        if sys.modules.get("hypothesis", 0) is None:
            del sys.modules["hypothesis"]
