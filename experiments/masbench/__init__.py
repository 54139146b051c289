"""MASBench: seeded generator, scorer and parquet loader for the five structural axes."""
