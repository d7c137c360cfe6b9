/* memcg variant "kprobe" (older kernels without the memcg tracepoints): the statistic update
 * functions themselves. Reads kernel structs, so it is only as right as the kernel headers BCC
 * compiles against; chosen only where kprobes exist and the symbols are in kallsyms. */
#include <linux/memcontrol.h>
#include "memcg.bpf.h"

static __always_inline u64 memcg_cgroup_id(struct mem_cgroup *memcg)
{
	struct cgroup *cg = NULL;
	struct kernfs_node *kn = NULL;
	u64 id = 0;
	bpf_probe_read_kernel(&cg, sizeof(cg), &memcg->css.cgroup);
	if (cg)
		bpf_probe_read_kernel(&kn, sizeof(kn), &cg->kn);
	if (kn)
		bpf_probe_read_kernel(&id, sizeof(id), &kn->id);
	return id;
}

int kp_memcg_state(struct pt_regs *ctx, struct mem_cgroup *memcg, int idx, int val)
{
	memcg_update(memcg_cgroup_id(memcg), 0, idx, val, UVM_MEMCG_STATE);
	return 0;
}

int kp_memcg_lruvec(struct pt_regs *ctx, struct lruvec *lruvec, int idx, int val)
{
	/* lruvec_memcg(): the lruvec is embedded in its memcg's per-node info */
	void *pn = (void *)lruvec - offsetof(struct mem_cgroup_per_node, lruvec);
	struct mem_cgroup *memcg = NULL;
	bpf_probe_read_kernel(&memcg, sizeof(memcg),
			      pn + offsetof(struct mem_cgroup_per_node, memcg));
	memcg_update(memcg_cgroup_id(memcg), 0, idx, val, UVM_MEMCG_LRUVEC);
	return 0;
}

int kp_memcg_events(struct pt_regs *ctx, struct mem_cgroup *memcg, int idx, unsigned long count)
{
	memcg_update(memcg_cgroup_id(memcg), 0, idx, (s64)count, UVM_MEMCG_EVENT);
	return 0;
}
