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
* :mod:`.files`: atomic whole-file replacement and bounded reads;
* :mod:`.tls`: the server-side SSL context of a TLS listener;
* :mod:`.gate`: SASL authentication of one connection (what it may do
  before, the exchange, refusals);
* :mod:`.live_users`: the users file, reloaded while the broker runs;
* :mod:`.authz`: ACL checks as the handlers make them (per-connection
  cache, audit of denials);
* :mod:`.runtime`: all of it put together for the broker (listeners,
  handshake, deadline, ACL store).
"""
