/* Mapping syscalls of traced processes: arguments saved at entry, one record at exit with the
 * result. The file behind an fd is resolved in user space. */
#include "scope.bpf.h"
BPF_RINGBUF_OUTPUT(mapping_rb, UVM_RINGBUF_PAGES);
BPF_HASH(mapping_args, u64, struct mapping_rec, UVM_MAX_PIDS);

static __always_inline void mapping_enter(u32 call, u64 addr, u64 len, u64 arg, s32 fd,
					  u32 prot, u32 flags)
{
	u64 id = bpf_get_current_pid_tgid();
	if (!is_target_pid(id >> 32))
		return;
	struct mapping_rec r = {};
	r.ts = bpf_ktime_get_ns();
	r.addr = addr;
	r.len = len;
	r.arg = arg;
	r.fd = fd;
	r.prot = prot;
	r.flags = flags;
	r.call = call;
	mapping_args.update(&id, &r);
}

static __always_inline void mapping_exit(s64 ret)
{
	u64 id = bpf_get_current_pid_tgid();
	struct mapping_rec *saved = mapping_args.lookup(&id);
	if (!saved)
		return;
	struct mapping_rec *r = mapping_rb.ringbuf_reserve(sizeof(struct mapping_rec));
	if (!r) {
		count_lost(UVM_LOST_MAPPINGS);
		mapping_args.delete(&id);
		return;
	}
	__builtin_memcpy(r, saved, sizeof(*r));
	r->ret = ret;
	r->pid = id >> 32;
	r->tid = (u32)id;
	bpf_get_current_comm(&r->comm, sizeof(r->comm));
	mapping_rb.ringbuf_submit(r, 0);
	mapping_args.delete(&id);
}

int tp_mmap_enter(struct tracepoint__syscalls__sys_enter_mmap *args)
{
	mapping_enter(UVM_MMAP, args->addr, args->len, args->off, (s32)args->fd, args->prot,
		      args->flags);
	return 0;
}

int tp_munmap_enter(struct tracepoint__syscalls__sys_enter_munmap *args)
{
	mapping_enter(UVM_MUNMAP, args->addr, args->len, 0, -1, 0, 0);
	return 0;
}

int tp_mremap_enter(struct tracepoint__syscalls__sys_enter_mremap *args)
{
	mapping_enter(UVM_MREMAP, args->addr, args->old_len, args->new_len, -1, 0, args->flags);
	return 0;
}

int tp_brk_enter(struct tracepoint__syscalls__sys_enter_brk *args)
{
	mapping_enter(UVM_BRK, args->brk, 0, 0, -1, 0, 0);
	return 0;
}

int tp_madvise_enter(struct tracepoint__syscalls__sys_enter_madvise *args)
{
	mapping_enter(UVM_MADVISE, args->start, args->len_in, 0, -1, 0, args->behavior);
	return 0;
}

/* One exit handler serves all five syscalls: the saved record says which call it was. */
int tp_mapping_exit(struct tracepoint__syscalls__sys_exit_mmap *args)
{
	mapping_exit(args->ret);
	return 0;
}
