/* cgroup memory charges: one update of a memcg statistic (item, signed val) for cgroup `id`.
 * Shared by the tracepoint and the kprobe variants. Kept when the cgroup is a target or the
 * task is in the traced tree; a positive page charge to a target cgroup also makes its task a
 * target (a container's processes are not children of `docker run`). */
#if UVM_RAW
BPF_RINGBUF_OUTPUT(memcg_rb, UVM_RINGBUF_PAGES);
#endif
BPF_HASH(memcg_agg, struct memcg_key, struct agg_val, UVM_MAX_AGG);

static __always_inline void memcg_agg_add(struct memcg_key *key, s64 delta)
{
	struct agg_val *v = memcg_agg.lookup(key);
	if (!v) {
		struct agg_val empty = {};
		agg_init(&empty);
		memcg_agg.insert(key, &empty);
		v = memcg_agg.lookup(key);
	}
	if (!v) {
		count_lost(UVM_LOST_MEMCG);
		return;
	}
	__sync_fetch_and_add(&v->sum, delta);
	__sync_fetch_and_add(&v->count, 1);
}

static __always_inline void memcg_update(u64 cgid, s32 item, s64 val, u32 kind)
{
	u64 id = bpf_get_current_pid_tgid();
	u32 tgid = id >> 32;
	u8 *target = cg_targets.lookup(&cgid);
	if (!target && !is_target_pid(tgid))
		return;
	if (target && kind == UVM_MEMCG_LRUVEC && val > 0 && tgid && tgid != config_get(2) &&
	    !is_target_pid(tgid)) {
		u32 self = tgid;
		if (pids.insert(&tgid, &self) && !is_target_pid(tgid))
			count_lost(UVM_LOST_SCOPE);
	}
	u64 ts = bpf_ktime_get_ns();
#if UVM_RAW
	struct memcg_rec *r = memcg_rb.ringbuf_reserve(sizeof(struct memcg_rec));
	if (!r) {
		count_lost(UVM_LOST_MEMCG);
		return;
	}
	r->ts = ts;
	r->cgroup_id = cgid;
	r->val = val;
	r->pid = tgid;
	r->tid = (u32)id;
	r->item = item;
	r->kind = kind;
	bpf_get_current_comm(&r->comm, sizeof(r->comm));
	memcg_rb.ringbuf_submit(r, 0);
#else
	struct memcg_key key = {};
	key.bucket = bucket_of(ts);
	key.cgroup_id = cgid;
	key.pid = tgid;
	key.item = item;
	key.kind = kind;
	memcg_agg_add(&key, val);
#endif
}
