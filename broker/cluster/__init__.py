"""Cluster mode: a broker's membership, the controller and the partition
metadata, all kept in etcd (state.py: the keys and values; decisions.py:
the controller's rules, sans I/O; controller.py: election and CAS writes;
member.py: registration and the session; replicas.py: this broker's
leader and follower roles, the replicated high watermark, acks=all and
ISR changes; fetcher.py: the follower's replica fetcher; status.py:
``tailrace cluster status``).

Imported only in cluster mode (``[cluster]`` node_id and etcd_endpoints)
and by ``tailrace cluster``: a single node never loads it.
"""
