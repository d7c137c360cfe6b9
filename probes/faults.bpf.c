/* User page faults of traced processes. page_fault_kernel is included for user addresses only:
 * a copy_to_user() into a fresh buffer faults in kernel mode yet counts in the task's minflt. */
#include "agg.bpf.h"

#if UVM_RAW
BPF_RINGBUF_OUTPUT(fault_rb, UVM_RINGBUF_PAGES);
#else
BPF_PERCPU_ARRAY(fault_slots, struct agg_slot, UVM_FAULT_SLOTS);
#endif
BPF_HASH(fault_agg, struct fault_key, struct agg_val, UVM_MAX_AGG);

static __always_inline void fault_flush(struct agg_slot *s, u32 code)
{
	if (!s->count)
		return;
	struct fault_key key = {};
	key.bucket = s->bucket;
	key.pid = s->pid;
	key.code = code;
	key.seq = agg_next_seq();
	struct agg_val v = {};
	slot_value(s, &v);
	if (fault_agg.insert(&key, &v))
		count_lost_n(UVM_LOST_PAGE_FAULT, s->count);
}

/* ip: the faulting instruction, or (ip_is_regs) the struct pt_regs * it is read from, only
 * where it is kept (--raw) and only for traced processes. */
static __always_inline void fault_record(u64 addr, u64 ip, int ip_is_regs, u64 code)
{
	u64 id = bpf_get_current_pid_tgid();
	u32 tgid = id >> 32;
#if UVM_RAW
	if (!is_target_pid(tgid))
		return;
	u64 ts = bpf_ktime_get_ns();
#ifdef UVM_OFF_PT_REGS_IP
	if (ip_is_regs) {
		u64 regs = ip;
		ip = 0;
		bpf_probe_read_kernel(&ip, sizeof(ip), (void *)(regs + UVM_OFF_PT_REGS_IP));
	}
#endif
	struct fault_rec *r = fault_rb.ringbuf_reserve(sizeof(struct fault_rec));
	if (!r) {
		count_lost(UVM_LOST_PAGE_FAULT);
		return;
	}
	r->ts = ts;
	r->addr = addr;
	r->ip = ip;
	r->code = code;
	r->pid = tgid;
	r->tid = (u32)id;
	fault_rb.ringbuf_submit(r, 0);
#else
	u64 bucket = bucket_now();
	u32 idx = code & (UVM_FAULT_SLOTS - 1);
	struct agg_slot *s = fault_slots.lookup(&idx);
	if (!s)
		return;
	/* a slot only ever holds a traced process, so a match needs no scope lookup */
	if (s->count && s->pid == tgid && s->bucket == bucket) {
		s->sum++;
		s->count++;
		return;
	}
	if (!is_target_pid(tgid))
		return;
	fault_flush(s, idx);
	slot_start(s, bucket, 0, 0, tgid, 1);
#endif
}

int tp_fault_user(struct tracepoint__exceptions__page_fault_user *args)
{
	fault_record(args->address, args->ip, 0, args->error_code);
	return 0;
}

int tp_fault_kernel(struct tracepoint__exceptions__page_fault_kernel *args)
{
	if ((s64)args->address < 0) /* kernel half of the address space */
		return 0;
	fault_record(args->address, args->ip, 0, args->error_code);
	return 0;
}

/* Raw tracepoint variant: the tracepoint's own arguments (unsigned long address,
 * struct pt_regs *regs, unsigned long error_code), with no trace record filled in first.
 * Built when the loader found pt_regs.ip in the kernel's BTF. */
#ifdef UVM_OFF_PT_REGS_IP
int raw_fault_user(struct bpf_raw_tracepoint_args *ctx)
{
	fault_record(ctx->args[0], ctx->args[1], 1, ctx->args[2]);
	return 0;
}

int raw_fault_kernel(struct bpf_raw_tracepoint_args *ctx)
{
	if ((s64)ctx->args[0] < 0)
		return 0;
	fault_record(ctx->args[0], ctx->args[1], 1, ctx->args[2]);
	return 0;
}
#endif
