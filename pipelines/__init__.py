"""The stages as plain Python: no Celery, no HTTP. Testable without a broker."""
