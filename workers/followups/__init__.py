"""Follow-ups after an upsert: the entity graph, summaries and typed relations.

Module order (each imports only those before it): kept (the artifact upsert leaves them), graphs
(the index owner's graph), summaries (stored summaries and their index points), relations (typed
relations through the batch), batch (the Batch API summariser and its beat tick), steps (the three
follow-up steps of the flow, and the hooks the upsert and delete stages call).

Follow-ups never change the event's status: the event is done when it is searchable; a graph or
summary failure is dead-lettered under its own step name and noted on the document.
"""
