"""jrnn's experiments: the seed note's story, reproduced on small tasks. Run ``python -m experiments --help``."""
