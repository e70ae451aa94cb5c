"""Peers: other job systems run on the same workload in the same run, for ratios."""
