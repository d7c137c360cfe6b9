/* memcg variant "raw_tracepoint" (kernel >= 6.14, with BTF): the same three tracepoints, attached
 * raw. A classic tracepoint program first has the kernel fill a trace record (perf buffer,
 * field copies) on every update; a raw one gets the tracepoint's arguments as they are:
 * (struct mem_cgroup *memcg, int item, int|unsigned long val). The cgroup id the classic record
 * carries is cgroup_id(memcg->css.cgroup) = memcg->css.cgroup->kn->id; the member offsets come
 * from the running kernel's BTF (UVM_OFF_*, set by the loader), never from BCC's headers. */
#include "memcg.bpf.h"

int raw_memcg_state(struct bpf_raw_tracepoint_args *ctx)
{
	memcg_update(ctx->args[0], 1, (s32)ctx->args[1], (s32)ctx->args[2],
		     UVM_MEMCG_STATE);
	return 0;
}

int raw_memcg_lruvec(struct bpf_raw_tracepoint_args *ctx)
{
	memcg_update(ctx->args[0], 1, (s32)ctx->args[1], (s32)ctx->args[2],
		     UVM_MEMCG_LRUVEC);
	return 0;
}

int raw_memcg_events(struct bpf_raw_tracepoint_args *ctx)
{
	memcg_update(ctx->args[0], 1, (s32)ctx->args[1], (s64)ctx->args[2],
		     UVM_MEMCG_EVENT);
	return 0;
}
