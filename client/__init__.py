"""tailrace client libraries and the sans-I/O code shared with the broker.

The public producer, consumer and admin APIs are exported here as they land;
``tailrace.client.records`` holds the record-batch format and
``tailrace.client.errors`` the error-code table.
"""
