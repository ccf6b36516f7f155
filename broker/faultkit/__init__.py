"""Fault-injection and checking tools for reliability tests and tools/.

Not to be confused with :mod:`tailrace.testing`, the pytest plugin that gives
users' own test suites a broker: this kit breaks a broker on purpose.

Nothing here runs in a production broker: the broker only exposes the seam
(:class:`~tailrace.broker.log.storage_io.StorageIO`) that these plug into.
It lives in the package, not in tests/, because tools/reliability.py runs
the same scenarios with longer profiles and needs the same pieces:

* :mod:`.oracle`: the one checker every fault test uses. Producers write
  unique ``(producer, sequence)`` values and log each outcome (acknowledged,
  failed, unknown) in a :class:`~.oracle.History`; after the run the whole
  log is read back (from the files on disk, or through a consumer) and
  :func:`~.oracle.check` reports every lost, duplicated, reordered or
  misplaced value, offset gaps and bad index entries.
* :mod:`.workload`: idempotent producer tasks that feed a History, and a
  consumer that reads a topic back.
* :mod:`.powercut`: a StorageIO that models what a power cut leaves on disk;
  :mod:`.powercut_broker` runs a broker process over it whose power is cut
  by SIGUSR1 (the cluster scenarios' power loss).
* :mod:`.replicas`: the replicas of a partition agree, batch for batch and
  byte for byte (below the high watermark, or whole after healing), leader
  epochs never decrease along a log, observed high watermarks and epochs
  never go back.
* :mod:`.netns`: network partitions between loopback addresses (nftables
  drop rules inside a private ``unshare -rn`` namespace) and SIGSTOP pauses,
  for cluster scenarios.
* :mod:`.faults`: StorageIO subclasses that fail syscalls (EIO, ENOSPC) or
  stop at a named crash point (an exception in-process, ``os._exit`` in a
  subprocess broker: ``python -m tailrace.broker.faultkit.faulty_broker``).
"""
