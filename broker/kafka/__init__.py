"""The Kafka wire-protocol front-end (issue 14): Kafka clients over the same
services as the native protocol. groups.py holds the group APIs."""
