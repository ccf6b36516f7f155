"""The tailrace broker: storage engine, server and request handlers."""
