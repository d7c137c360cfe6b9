/* memcg variant "tracepoint" (kernel >= 6.14): the tracepoint's id is the cgroup's inode. */
#include "memcg.bpf.h"

int tp_memcg_state(struct tracepoint__memcg__mod_memcg_state *args)
{
	memcg_update(args->id, 0, args->item, args->val, UVM_MEMCG_STATE);
	return 0;
}

int tp_memcg_lruvec(struct tracepoint__memcg__mod_memcg_lruvec_state *args)
{
	memcg_update(args->id, 0, args->item, args->val, UVM_MEMCG_LRUVEC);
	return 0;
}

int tp_memcg_events(struct tracepoint__memcg__count_memcg_events *args)
{
	memcg_update(args->id, 0, args->item, (s64)args->val, UVM_MEMCG_EVENT);
	return 0;
}
