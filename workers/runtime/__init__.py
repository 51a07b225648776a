"""The stage runtime: the flow, the Celery app, dispatch and the wrapper every step runs in."""
