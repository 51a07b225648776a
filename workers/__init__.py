"""The transport shell: Celery, Redis state, watchers, HTTP API and the CLI."""
