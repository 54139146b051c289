"""MASBench: seeded generators (generic ``generator``, iGSM-style ``igsm``; picked by ``generators``), scorer and parquet loader for the five structural axes."""
