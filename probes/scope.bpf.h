/* Scope: which processes and cgroups are traced, the recorder's config, loss counters.
 * Every probe includes it; bpfsource.py pastes it once into the program text (BCC rewrites map
 * calls only in its main text, so local `*.bpf.h` includes are expanded before compiling). */
#ifndef UVM_SCOPE_BPF_H
#define UVM_SCOPE_BPF_H

BPF_HASH(pids, u32, struct pid_scope, UVM_MAX_PIDS); /* tgid -> why it is traced */
BPF_HASH(cg_targets, u64, u8, UVM_MAX_CGROUPS); /* memcg id (cgroup inode) -> 1 */
BPF_ARRAY(config, u64, UVM_CONFIG_SLOTS);       /* enum uvm_config: set by the loader */
BPF_PERCPU_ARRAY(lost, u64, UVM_LOST_SLOTS);    /* enum uvm_lost: events each probe dropped */

static __always_inline void count_lost(int slot)
{
	u64 *n = lost.lookup(&slot);
	if (n)
		(*n)++;
}

static __always_inline void count_lost_n(int slot, u64 n)
{
	u64 *c = lost.lookup(&slot);
	if (c)
		*c += n;
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

#endif
