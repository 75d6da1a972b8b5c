"""The rules: one module per domain, one pytest test per rule (catalogue id in the test id)."""
