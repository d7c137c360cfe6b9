/* The `proc` stream: fork / exec / exit of traced processes and cgroup_mkdir, and the process
 * tree that scopes every other probe (a forked child of a traced process is traced). */
#include <uapi/linux/sched.h>
#include "scope.bpf.h"

BPF_HASH(exit_codes, u32, s32, UVM_MAX_PIDS); /* tgid -> exit_group status */
BPF_RINGBUF_OUTPUT(proc_rb, UVM_RINGBUF_PAGES_SMALL);

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
		/* The recorder's fork of the command (UVM_CONFIG_ADOPT_CHILD_OF = the recorder, armed
		 * just before): traced from its first fault, before the recorder even knows its pid. */
		int slot = UVM_CONFIG_ADOPT_CHILD_OF;
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
	if (!config_get(UVM_CONFIG_WATCH_CGROUPS))
		return 0;
	u64 id = args->id;
	if ((u64)args->root == config_get(UVM_CONFIG_MEMORY_HIERARCHY)) {
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
