"""Analysis of benchmark results: statistics, validity verdicts, comparisons.

Everything here is a pure function of result records; nothing talks to a device or the disk.
"""
