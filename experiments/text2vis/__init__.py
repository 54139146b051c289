"""Text2Vis benchmark and RL-Text2Vis (issue 16)."""
