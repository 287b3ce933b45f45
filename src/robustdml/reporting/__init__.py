"""Benchmark suites, and reports a person reads (Markdown + HTML, plots, retrieval galleries)."""
