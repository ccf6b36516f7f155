"""The web console, served from the broker process (``--console HOST:PORT``).

* :mod:`.adapter`: the one door into the broker's core (services, log
  manager, coordinator, authorizer);
* :mod:`.web`: the Starlette application, its pages and the live tail;
* :mod:`.sessions`: sessions, CSRF tokens and the password check;
* :mod:`.render`: record bytes shown safely (text, JSON, hex, truncation);
* :mod:`.rates`: rates and percentiles from the broker's own metrics;
* :mod:`.server`: hypercorn's trio worker in the broker's nursery.

docs/console.md describes the pages, the security and the cost.
"""
