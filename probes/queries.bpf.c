/* Memory queries: sysinfo() with the values it returned (read back from the caller's buffer at
 * exit), and opens of /proc/meminfo and cgroup files (user space keeps the memory.* ones). */
#include <linux/sysinfo.h>
#include "scope.bpf.h"

BPF_RINGBUF_OUTPUT(query_rb, UVM_RINGBUF_PAGES_SMALL);
BPF_HASH(sysinfo_args, u64, u64, UVM_MAX_PIDS);
BPF_HASH(openat_args, u64, struct query_rec, 1024);

int tp_sysinfo_enter(struct tracepoint__syscalls__sys_enter_sysinfo *args)
{
	u64 id = bpf_get_current_pid_tgid();
	u64 buf = (u64)args->info;
	if (is_target_pid(id >> 32))
		sysinfo_args.update(&id, &buf);
	return 0;
}

static __always_inline struct query_rec *query_reserve(u32 kind, s64 ret)
{
	struct query_rec *r = query_rb.ringbuf_reserve(sizeof(struct query_rec));
	if (!r) {
		count_lost(UVM_LOST_QUERIES);
		return NULL;
	}
	__builtin_memset(r, 0, sizeof(*r));
	u64 id = bpf_get_current_pid_tgid();
	r->ts = bpf_ktime_get_ns();
	r->pid = id >> 32;
	r->tid = (u32)id;
	r->kind = kind;
	r->ret = ret;
	bpf_get_current_comm(&r->comm, sizeof(r->comm));
	return r;
}

int tp_sysinfo_exit(struct tracepoint__syscalls__sys_exit_sysinfo *args)
{
	u64 id = bpf_get_current_pid_tgid();
	u64 *buf = sysinfo_args.lookup(&id);
	if (!buf)
		return 0;
	struct sysinfo *info = (struct sysinfo *)*buf;
	sysinfo_args.delete(&id);
	struct query_rec *r = query_reserve(UVM_QUERY_SYSINFO, args->ret);
	if (!r)
		return 0;
	if (args->ret == 0) {
		u64 total = 0, freeram = 0;
		u32 unit = 0;
		bpf_probe_read_user(&total, sizeof(total), &info->totalram);
		bpf_probe_read_user(&freeram, sizeof(freeram), &info->freeram);
		bpf_probe_read_user(&unit, sizeof(unit), &info->mem_unit);
		r->total = total * unit;
		r->free = freeram * unit;
	}
	query_rb.ringbuf_submit(r, 0);
	return 0;
}

static __always_inline int has_prefix(const char *s, const char *p, int n)
{
#pragma unroll
	for (int i = 0; i < 16; i++) {
		if (i >= n)
			return 1;
		if (s[i] != p[i])
			return 0;
	}
	return 1;
}

int tp_openat_enter(struct tracepoint__syscalls__sys_enter_openat *args)
{
	u64 id = bpf_get_current_pid_tgid();
	if (!is_target_pid(id >> 32))
		return 0;
	struct query_rec r = {};
	bpf_probe_read_user_str(&r.path, sizeof(r.path), args->filename);
	if (!has_prefix(r.path, "/proc/meminfo", 14) && !has_prefix(r.path, "/sys/fs/cgroup/", 15))
		return 0;
	openat_args.update(&id, &r);
	return 0;
}

int tp_openat_exit(struct tracepoint__syscalls__sys_exit_openat *args)
{
	u64 id = bpf_get_current_pid_tgid();
	struct query_rec *saved = openat_args.lookup(&id);
	if (!saved)
		return 0;
	struct query_rec *r = query_reserve(UVM_QUERY_OPENAT, args->ret);
	if (r) {
		bpf_probe_read_kernel(&r->path, sizeof(r->path), saved->path);
		query_rb.ringbuf_submit(r, 0);
	}
	openat_args.delete(&id);
	return 0;
}
