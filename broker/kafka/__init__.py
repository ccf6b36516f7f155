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
