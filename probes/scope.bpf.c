/* Scope: which processes and cgroups are traced, shared helpers, and the `proc` stream
 * (fork / exec / exit / cgroup_mkdir). Included first; the other concerns use its maps. */
#include <uapi/linux/sched.h>

BPF_HASH(pids, u32, u32, UVM_MAX_PIDS);         /* tgid -> root pid of its tree */
BPF_HASH(cg_targets, u64, u8, UVM_MAX_CGROUPS); /* memcg id (cgroup inode) -> 1 */
BPF_HASH(exit_codes, u32, s32, UVM_MAX_PIDS);   /* tgid -> exit_group status */
BPF_ARRAY(config, u64, 4);                      /* [0] watch new cgroups, [1] memory hierarchy id, [2] our own tgid */
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

/* Aggregation: find or create the entry (created empty, so racing creators lose nothing), then add
 * atomically. A full map is a counted loss, never a silent one. */
static __always_inline void agg_init(struct agg_val *v)
{
	v->tid = (u32)bpf_get_current_pid_tgid();
	bpf_get_current_comm(&v->comm, sizeof(v->comm));
}

/* Each aggregation map has its own copy of this (BCC cannot use map calls inside a macro):
 *	v = map.lookup(key); if (!v) { map.insert(key, &empty); v = map.lookup(key); }
 *	if (v) { atomic v->sum += delta; atomic v->count += 1; } else count_lost(slot); */

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
	u32 *root = pids.lookup(&parent);
	if (!root || (args->clone_flags & CLONE_THREAD))
		return 0;
	u32 child = args->pid, r0 = *root;
	if (pids.update(&child, &r0))
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
