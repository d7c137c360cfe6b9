/* Event layouts shared by the BPF programs and the Python decoder (probes/event_dtypes.py).
 * tests/test_probes_layout.py compiles this header with the system C compiler and checks every
 * offset and size against the decoder's numpy dtypes, so the two sides cannot drift.
 * Fixed-size records only: one ring buffer carries one record type, so user space can view a
 * ring's contents as a strided numpy array. */
#ifndef UVMTRACE_EVENTS_H
#define UVMTRACE_EVENTS_H

#include <linux/types.h>

#define UVM_COMM_LEN 16
#define UVM_PATH_LEN 128

/* memcg update source: which tracepoint (or kprobe) produced it */
enum uvm_memcg_kind { UVM_MEMCG_STATE = 0, UVM_MEMCG_LRUVEC = 1, UVM_MEMCG_EVENT = 2 };

/* loss counters (BPF_PERCPU_ARRAY `lost`): one slot per probe, UVM_LOST_<probe name> in the order
 * of probes/registry.PROBES, then full scope maps */
enum uvm_lost {
	UVM_LOST_PROC,
	UVM_LOST_MEMCG,
	UVM_LOST_PAGE_FAULT,
	UVM_LOST_MAPPINGS,
	UVM_LOST_FILEMAP,
	UVM_LOST_QUERIES,
	UVM_LOST_SCOPE, /* pid or cgroup target map full */
	UVM_LOST_SLOTS,
};

/* the loader's settings (BPF_ARRAY `config`, written by KernelTracer: event_dtypes.Config) */
enum uvm_config {
	UVM_CONFIG_WATCH_CGROUPS = 0, /* new memory cgroups become targets (cgroup_mkdir) */
	UVM_CONFIG_MEMORY_HIERARCHY = 1, /* hierarchy id of the memory controller (0: cgroup v2) */
	UVM_CONFIG_SELF = 2, /* the recorder's tgid: never adopted, never traced */
	UVM_CONFIG_ADOPT_CHILD_OF = 3, /* trace the next child this tgid forks (then 0) */
	UVM_CONFIG_SLOTS = 4,
};

enum uvm_proc_kind { UVM_PROC_FORK = 0, UVM_PROC_EXEC = 1, UVM_PROC_EXIT = 2, UVM_PROC_MKDIR = 3 };
enum uvm_query_kind { UVM_QUERY_SYSINFO = 0, UVM_QUERY_OPENAT = 1 };
enum uvm_mapping_call {
	UVM_MMAP = 0, UVM_MUNMAP = 1, UVM_MREMAP = 2, UVM_BRK = 3, UVM_MADVISE = 4,
};
enum uvm_filemap_kind { UVM_FILEMAP_ADD = 0, UVM_FILEMAP_DELETE = 1 };

/* Aggregated mode, hot path: each CPU sums into a slot (BPF_PERCPU_ARRAY, one slot per item,
 * fault code or page cache event kind) while the key stays the same: no hash lookup, no atomics.
 * When another key takes the slot, the old sums are inserted into the concern's aggregation hash
 * as a new entry of their own (the key's `seq` makes it unique), so an entry is complete when it
 * appears and never written again: user space drains the hash at any time without racing a
 * writer. The slots themselves are read once the probes are detached. */
#define UVM_ITEM_SLOTS 256 /* memcg slot index: kind * UVM_ITEM_SLOTS + item */
#define UVM_FAULT_SLOTS 32 /* error code & 0x1f */

struct agg_slot {
	__u64 bucket; /* bucket start, ns */
	__u64 owner; /* compared on the hot path: memcg pointer or cgroup id; file inode */
	__u64 key2; /* memcg: cgroup id; filemap: dev */
	__s64 sum;
	__u64 count; /* 0: slot empty */
	__u32 pid;
	__u32 tid; /* the thread that started the slot */
	char comm[UVM_COMM_LEN];
};

/* Value of every aggregation hash entry: one slot's sums. */
struct agg_val {
	__s64 sum; /* sum of the tracepoint's val (pages, bytes, KiB or counts) */
	__u64 count; /* updates folded in */
	__u32 tid; /* the thread that created the entry */
	__u32 pad;
	char comm[UVM_COMM_LEN];
};

/* Value of the `pids` map: why a process is traced. */
struct pid_scope {
	__u32 root; /* the pid whose tree it belongs to (itself when adopted) */
	__u32 pad;
	__u64 via_cgroup; /* adopted as a member of this watched cgroup (0: added or forked) */
};

struct memcg_key {
	__u64 bucket; /* bucket start, ns */
	__u64 cgroup_id;
	__u32 pid;
	__s32 item;
	__u32 kind; /* enum uvm_memcg_kind */
	__u32 seq; /* cpu << 20 | per-CPU counter: one entry per flushed slot */
};

struct memcg_rec {
	__u64 ts;
	__u64 cgroup_id;
	__s64 val;
	__u32 pid;
	__u32 tid;
	__s32 item;
	__u32 kind;
	char comm[UVM_COMM_LEN];
};

struct fault_key {
	__u64 bucket;
	__u32 pid;
	__u32 code; /* x86 error code, low 5 bits: present, write, user, reserved, fetch */
	__u32 seq;
	__u32 pad;
};

struct fault_rec {
	__u64 ts;
	__u64 addr;
	__u64 ip;
	__u64 code;
	__u32 pid;
	__u32 tid;
};

struct mapping_rec {
	__u64 ts;
	__u64 addr;
	__u64 len;
	__u64 arg; /* mmap: offset; mremap: new length */
	__s64 ret;
	__u32 pid;
	__u32 tid;
	__s32 fd;
	__u32 prot;
	__u32 flags; /* mmap/mremap flags, madvise advice */
	__u32 call; /* enum uvm_mapping_call */
	char comm[UVM_COMM_LEN];
};

struct filemap_key {
	__u64 bucket;
	__u64 ino;
	__u32 dev;
	__u32 pid;
	__u32 kind; /* enum uvm_filemap_kind */
	__u32 seq;
};

struct query_rec {
	__u64 ts;
	__u64 total; /* sysinfo: totalram x mem_unit */
	__u64 free; /* sysinfo: freeram x mem_unit */
	__s64 ret;
	__u32 pid;
	__u32 tid;
	__u32 kind; /* enum uvm_query_kind */
	__u32 pad;
	char comm[UVM_COMM_LEN];
	char path[UVM_PATH_LEN];
};

struct proc_rec {
	__u64 ts;
	__u64 cgroup_id; /* cgroup_mkdir */
	__u32 pid;
	__u32 tid;
	__u32 ppid;
	__u32 kind; /* enum uvm_proc_kind */
	__s32 code; /* exit: exit_group status, UVM_NO_CODE when unknown */
	__s32 level; /* cgroup_mkdir */
	__s32 root; /* cgroup_mkdir: hierarchy id */
	__u32 pad;
	char comm[UVM_COMM_LEN];
	char text[UVM_PATH_LEN]; /* exec: filename; cgroup_mkdir: path */
};

#define UVM_NO_CODE (-2147483647 - 1)

#endif
