"""Benchmarks and evaluations: speed (ingest, query, burst), retrieval quality, the graph at scale."""
