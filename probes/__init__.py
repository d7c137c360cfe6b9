"""Kernel probes (BCC eBPF): cgroup memory charges, page faults, mappings, page cache, memory
queries and process-tree scope, turned into Arrow batches in the recording schema."""
