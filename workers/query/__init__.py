"""The index owner's read side: the questions it answers (search, documents, graph) and health."""
