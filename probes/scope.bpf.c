/* Scope: which processes and cgroups are traced, shared helpers, and the `proc` stream
 * (fork / exec / exit / cgroup_mkdir). Included first; the other concerns use its maps. */
#include <uapi/linux/sched.h>

BPF_HASH(pids, u32, struct pid_scope, UVM_MAX_PIDS); /* tgid -> why it is traced */
BPF_HASH(cg_targets, u64, u8, UVM_MAX_CGROUPS); /* memcg id (cgroup inode) -> 1 */
BPF_HASH(exit_codes, u32, s32, UVM_MAX_PIDS);   /* tgid -> exit_group status */
BPF_ARRAY(config, u64, 4);                      /* [0] watch new cgroups, [1] memory hierarchy id, [2] our own tgid,
							   [3] adopt the next child of this tgid */
BPF_PERCPU_ARRAY(lost, u64, UVM_LOST_SLOTS);
BPF_RINGBUF_OUTPUT(proc_rb, UVM_RINGBUF_PAGES_SMALL);

static __always_inline void count_lost(int slot)
{
	u64 *n = lost.lookup(&slot);
	if (n)
		(*n)++;
}

static __always_inline u32 current_tgid(void)
{
	return bpf_get_current_pid_tgid() >> 32;
}

static __always_inline int is_target_pid(u32 tgid)
{
	return pids.lookup(&tgid) != NULL;
}

static __always_inline u64 config_get(int slot)
{
	u64 *v = config.lookup(&slot);
	return v ? *v : 0;
}

static __always_inline u64 bucket_of(u64 ts)
{
	return ts - ts % UVM_BUCKET_NS;
}

/* The clock of aggregation buckets. bpf_ktime_get_ns() costs ~40 ns in a VM and runs several
 * times per page fault; jiffies cost a load. One (ktime, jiffies) pair, taken by the first
 * program run, anchors the conversion (a racing second anchor is as good as the first); the
 * result is within a tick (UVM_JIFFY_NS) of the monotonic clock, far below a bucket. */
BPF_ARRAY(clock_anchor, u64, 2);
static __always_inline u64 bucket_now(void)
{
#if UVM_JIFFY_NS
	int k0 = 0, k1 = 1;
	u64 *t0 = clock_anchor.lookup(&k0), *j0 = clock_anchor.lookup(&k1);
	u64 j = bpf_jiffies64();
	if (t0 && j0) {
		if (!*t0) {
			*j0 = j;
			*t0 = bpf_ktime_get_ns();
		}
		return bucket_of(*t0 + (j - *j0) * UVM_JIFFY_NS);
	}
#endif
	return bucket_of(bpf_ktime_get_ns());
}

/* Aggregation (see struct agg_slot in events.h): per-CPU slots on the hot path, flushed into the
 * concern's hash as immutable entries. A flush that finds the hash full is a counted loss of all
 * the updates it carried, never a silent one. */
BPF_PERCPU_ARRAY(agg_seq, u32, 1);

static __always_inline void count_lost_n(int slot, u64 n)
{
	u64 *c = lost.lookup(&slot);
	if (c)
		*c += n;
}

/* Unique per flush: this CPU's number and a per-CPU counter (wraps after 2^20 flushes, long
 * after the entry it could collide with has been drained). */
static __always_inline u32 agg_next_seq(void)
{
	u32 zero = 0, n = 0;
	u32 *c = agg_seq.lookup(&zero);
	if (c) {
		n = *c;
		*c = n + 1;
	}
	return (bpf_get_smp_processor_id() << 20) | (n & 0xFFFFF);
}

static __always_inline void slot_start(struct agg_slot *s, u64 bucket, u64 owner, u64 key2,
				       u32 pid, s64 delta)
{
	s->bucket = bucket;
	s->owner = owner;
	s->key2 = key2;
	s->sum = delta;
	s->count = 1;
	s->pid = pid;
	s->tid = (u32)bpf_get_current_pid_tgid();
	bpf_get_current_comm(&s->comm, sizeof(s->comm)); /* once per key, not per update */
}

static __always_inline void slot_value(struct agg_slot *s, struct agg_val *v)
{
	v->sum = s->sum;
	v->count = s->count;
	v->tid = s->tid;
	__builtin_memcpy(&v->comm, &s->comm, sizeof(v->comm));
}

/* Each concern has its own flush (BCC cannot use map calls inside a macro):
 *	if (!s->count) return; key from the slot, key.seq = agg_next_seq(); slot_value(s, &v);
 *	if (map.insert(&key, &v)) count_lost_n(slot, s->count); */

static __always_inline struct proc_rec *proc_reserve(u32 kind)
{
	struct proc_rec *r = proc_rb.ringbuf_reserve(sizeof(struct proc_rec));
	if (!r) {
		count_lost(UVM_LOST_PROC);
		return NULL;
	}
	__builtin_memset(r, 0, sizeof(*r));
	u64 id = bpf_get_current_pid_tgid();
	r->ts = bpf_ktime_get_ns();
	r->pid = id >> 32;
	r->tid = (u32)id;
	r->kind = kind;
	r->code = UVM_NO_CODE;
	bpf_get_current_comm(&r->comm, sizeof(r->comm));
	return r;
}

/* task_newtask runs in the parent before the child can run, and carries clone_flags: threads
 * share the parent's tgid and need no entry of their own. */
int tp_task_newtask(struct tracepoint__task__task_newtask *args)
{
	u32 parent = current_tgid();
	if (args->clone_flags & CLONE_THREAD)
		return 0;
	u32 child = args->pid;
	struct pid_scope inherited = {};
	struct pid_scope *scope = pids.lookup(&parent);
	if (scope) {
		/* the child inherits how its parent came in: forgetting a cgroup drops its tree */
		inherited = *scope;
	} else {
		/* The recorder's fork of the command (config[3] = the recorder, armed just before):
		 * traced from its first fault, before the recorder even knows its pid. */
		int slot = 3;
		u64 *armed = config.lookup(&slot);
		if (!armed || *armed != parent)
			return 0;
		*armed = 0;
		inherited.root = child;
	}
	if (pids.update(&child, &inherited))
		count_lost(UVM_LOST_SCOPE);
	struct proc_rec *r = proc_reserve(UVM_PROC_FORK);
	if (!r)
		return 0;
	r->ppid = parent;
	r->pid = child;
	r->tid = child;
	proc_rb.ringbuf_submit(r, 0);
	return 0;
}

int tp_process_exec(struct tracepoint__sched__sched_process_exec *args)
{
	if (!is_target_pid(current_tgid()))
		return 0;
	struct proc_rec *r = proc_reserve(UVM_PROC_EXEC);
	if (!r)
		return 0;
	bpf_probe_read_kernel_str(&r->text, sizeof(r->text),
				  (void *)args + (args->data_loc_filename & 0xFFFF));
	proc_rb.ringbuf_submit(r, 0);
	return 0;
}

int tp_exit_group(struct tracepoint__syscalls__sys_enter_exit_group *args)
{
	u32 tgid = current_tgid();
	s32 code = args->error_code & 0xff;
	if (is_target_pid(tgid))
		exit_codes.update(&tgid, &code);
	return 0;
}

int tp_process_exit(struct tracepoint__sched__sched_process_exit *args)
{
	u32 tgid = current_tgid();
	if (!args->group_dead || !is_target_pid(tgid))
		return 0;
	struct proc_rec *r = proc_reserve(UVM_PROC_EXIT);
	if (r) {
		s32 *code = exit_codes.lookup(&tgid);
		if (code)
			r->code = *code;
		proc_rb.ringbuf_submit(r, 0);
	}
	exit_codes.delete(&tgid);
	pids.delete(&tgid);
	return 0;
}

int tp_cgroup_mkdir(struct tracepoint__cgroup__cgroup_mkdir *args)
{
	if (!config_get(0))
		return 0;
	u64 id = args->id;
	if ((u64)args->root == config_get(1)) {
		u8 one = 1;
		if (cg_targets.update(&id, &one))
			count_lost(UVM_LOST_SCOPE);
	}
	struct proc_rec *r = proc_reserve(UVM_PROC_MKDIR);
	if (!r)
		return 0;
	r->cgroup_id = id;
	r->level = args->level;
	r->root = args->root;
	bpf_probe_read_kernel_str(&r->text, sizeof(r->text),
				  (void *)args + (args->data_loc_path & 0xFFFF));
	proc_rb.ringbuf_submit(r, 0);
	return 0;
}
