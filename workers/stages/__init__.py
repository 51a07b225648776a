"""The ingestion stages, one module each, in flow order (workers/runtime/flow.py).

Each loads the references in its message, calls one ``pipelines`` function, records the result and
hands the event id on by name; the step runtime (workers/runtime/step.py) does the rest. Message
arguments are event ids only: content travels through ``State`` artifacts, so Flower and the broker
never see document text.
"""
