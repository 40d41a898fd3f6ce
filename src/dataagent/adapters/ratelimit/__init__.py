"""The rate of new questions per key, on the `limits` library: in memory, or in Redis shared by every process."""
