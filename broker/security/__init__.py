"""Broker-side security: users file, principals, ACLs and the audit log.

The SASL mechanisms themselves are sans-I/O and shared with the clients
(``tailrace.client.security``); this package holds what only the broker
needs:

* :mod:`.users`: the users file (SCRAM credentials) and the functions behind
  ``tailrace users add|remove|list``;
* :mod:`.principal`: who a connection is, after SASL or mutual TLS;
* :mod:`.acl`: the allow-only ACL model, :class:`~.acl.Authorizer` and the
  durable :class:`~.acl.AclStore`;
* :mod:`.audit`: the ``tailrace.audit`` log lines;
* :mod:`.files`: atomic whole-file replacement and bounded reads.
"""
