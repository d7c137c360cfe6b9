/* User page faults of traced processes. page_fault_kernel is included for user addresses only:
 * a copy_to_user() into a fresh buffer faults in kernel mode yet counts in the task's minflt. */
#if UVM_RAW
BPF_RINGBUF_OUTPUT(fault_rb, UVM_RINGBUF_PAGES);
#endif
BPF_HASH(fault_agg, struct fault_key, struct agg_val, UVM_MAX_AGG);

static __always_inline void fault_agg_add(struct fault_key *key, s64 delta)
{
	struct agg_val *v = fault_agg.lookup(key);
	if (!v) {
		struct agg_val empty = {};
		agg_init(&empty);
		fault_agg.insert(key, &empty);
		v = fault_agg.lookup(key);
	}
	if (!v) {
		count_lost(UVM_LOST_FAULT);
		return;
	}
	__sync_fetch_and_add(&v->sum, delta);
	__sync_fetch_and_add(&v->count, 1);
}

static __always_inline void fault_record(u64 addr, u64 ip, u64 code)
{
	u64 id = bpf_get_current_pid_tgid();
	u32 tgid = id >> 32;
	if (!is_target_pid(tgid))
		return;
	u64 ts = bpf_ktime_get_ns();
#if UVM_RAW
	struct fault_rec *r = fault_rb.ringbuf_reserve(sizeof(struct fault_rec));
	if (!r) {
		count_lost(UVM_LOST_FAULT);
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
	struct fault_key key = {};
	key.bucket = bucket_of(ts);
	key.pid = tgid;
	key.code = code & 0x1f;
	fault_agg_add(&key, 1);
#endif
}

int tp_fault_user(struct tracepoint__exceptions__page_fault_user *args)
{
	fault_record(args->address, args->ip, args->error_code);
	return 0;
}

int tp_fault_kernel(struct tracepoint__exceptions__page_fault_kernel *args)
{
	if ((s64)args->address < 0) /* kernel half of the address space */
		return 0;
	fault_record(args->address, args->ip, args->error_code);
	return 0;
}
