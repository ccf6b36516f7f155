"""Protocol-free core services, shared by both front-ends.

The native handlers (``broker/handlers/``) and the Kafka handlers
(``broker/kafka/``) are adapters: they turn their protocol's request into the
plain inputs here, call the service, and map its outcomes (one
``BrokerError | None`` per partition or topic) back with their own error
mapping. Nothing in this package imports a wire protocol
(``tailrace.client.protocol``) or encodes a response.

* :mod:`.topics`: topic lookups, the internal-topic rule, creation and
  deletion policy (validate_only, partition limit) and auto-creation, in one
  place;
* :mod:`.produce`: authorize, look up, check one batch, append, count, wait
  for durability;
* :mod:`.fetch`: plan reads (authorize, range check), the long-poll wait on
  high-watermark events, and the read under budgets (file slices);
* :mod:`.offsets`: offsets by time (earliest, latest, a timestamp) and
  producer ids.
"""
