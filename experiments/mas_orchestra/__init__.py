"""MAS-Orchestra: an orchestrator writes a whole multi-agent system as one output; MASBench evaluation."""
