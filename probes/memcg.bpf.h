/* cgroup memory charges: one update of a memcg statistic (item, signed val) for a memcg.
 * Shared by the tracepoint, raw tracepoint and kprobe variants. Kept when the cgroup is a target
 * or the task is in the traced tree; a positive page charge to a target cgroup also makes its
 * task a target (a container's processes are not children of `docker run`). */
#ifndef UVM_MEMCG_BPF_H
#define UVM_MEMCG_BPF_H

#include "agg.bpf.h"

#if UVM_RAW
BPF_RINGBUF_OUTPUT(memcg_rb, UVM_RINGBUF_PAGES);
#else
BPF_PERCPU_ARRAY(memcg_slots, struct agg_slot, 3 * UVM_ITEM_SLOTS); /* kind x item */
#endif
BPF_HASH(memcg_agg, struct memcg_key, struct agg_val, UVM_MAX_AGG);

static __always_inline void memcg_flush(struct agg_slot *s, u32 kind, s32 item)
{
	if (!s->count)
		return;
	struct memcg_key key = {};
	key.bucket = s->bucket;
	key.cgroup_id = s->key2;
	key.pid = s->pid;
	key.item = item;
	key.kind = kind;
	key.seq = agg_next_seq();
	struct agg_val v = {};
	slot_value(s, &v);
	if (memcg_agg.insert(&key, &v))
		count_lost_n(UVM_LOST_MEMCG, s->count);
}

#ifdef UVM_OFF_CGROUP_KN
/* A struct cgroup's id: its kernfs node id, which is the cgroup directory's inode. */
static __always_inline u64 cgroup_id_of(u64 cgroup)
{
	u64 kn = 0, id = 0;
	if (!cgroup)
		return 0;
	bpf_probe_read_kernel(&kn, sizeof(kn), (void *)(cgroup + UVM_OFF_CGROUP_KN));
	if (!kn)
		return 0;
	bpf_probe_read_kernel(&id, sizeof(id), (void *)(kn + UVM_OFF_KERNFS_ID));
	return id;
}
#endif

#ifdef UVM_OFF_MEMCG_CGROUP
/* cgroup_id(memcg->css.cgroup), what the classic record's `id` holds: the cgroup directory's
 * kernfs node id (= its inode). Offsets from the running kernel's BTF (kernlayout.py). */
static __always_inline u64 memcg_id_of(u64 memcg)
{
	u64 cgroup = 0;
	bpf_probe_read_kernel(&cgroup, sizeof(cgroup), (void *)(memcg + UVM_OFF_MEMCG_CGROUP));
	return cgroup_id_of(cgroup);
}
#endif

/* Whether the current task is a member of memory cgroup `cgid`. A charge to a cgroup is not
 * always made by one of its members: whoever drains a CPU's LRU batch moves other cgroups'
 * folios (and their lruvec counters), reclaim and IRQs charge on behalf of others. Only a member
 * may be adopted. current->cgroups->subsys[memory]->cgroup->kn->id, offsets from BTF. */
static __always_inline int current_in_memcg(u64 cgid)
{
#ifdef UVM_OFF_TASK_CGROUPS
	u64 task = (u64)bpf_get_current_task(), cset = 0, css = 0, cgroup = 0;
	bpf_probe_read_kernel(&cset, sizeof(cset), (void *)(task + UVM_OFF_TASK_CGROUPS));
	if (!cset)
		return 0;
	bpf_probe_read_kernel(&css, sizeof(css),
			      (void *)(cset + UVM_OFF_CSS_SET_SUBSYS + 8 * UVM_MEMORY_CGRP_ID));
	if (!css)
		return 0;
	bpf_probe_read_kernel(&cgroup, sizeof(cgroup), (void *)(css + UVM_OFF_CSS_CGROUP));
	return cgroup_id_of(cgroup) == cgid;
#else
	return 1; /* no BTF: adopt any charger (may take in strangers; said in metadata) */
#endif
}

/* owner: the memcg as the caller has it: its pointer (owner_is_ptr, raw tracepoints: the id is
 * read only when the hot path misses) or its cgroup id. */
static __always_inline void memcg_update(u64 owner, int owner_is_ptr, s32 item, s64 val,
					 u32 kind)
{
	u64 id = bpf_get_current_pid_tgid();
	u32 tgid = id >> 32;
#if !UVM_RAW
	u64 bucket = bucket_now();
	u32 idx = kind * UVM_ITEM_SLOTS + (u32)item;
	struct agg_slot *slot = NULL;
	if (item >= 0 && item < UVM_ITEM_SLOTS)
		slot = memcg_slots.lookup(&idx);
	/* a slot only ever holds a kept (cgroup, pid), so a match needs no scope lookup */
	if (slot && slot->count && slot->owner == owner && slot->pid == tgid &&
	    slot->bucket == bucket) {
		slot->sum += val;
		slot->count++;
		return;
	}
#endif
	u64 cgid = owner;
#ifdef UVM_OFF_MEMCG_CGROUP
	if (owner_is_ptr)
		cgid = memcg_id_of(owner);
#endif
	u8 *target = cg_targets.lookup(&cgid);
	if (!target && !is_target_pid(tgid))
		return;
	if (target && kind == UVM_MEMCG_LRUVEC && val > 0 && tgid && tgid != config_get(UVM_CONFIG_SELF) &&
	    !is_target_pid(tgid) && current_in_memcg(cgid)) {
		struct pid_scope self = {.root = tgid, .via_cgroup = cgid};
		if (pids.insert(&tgid, &self) && !is_target_pid(tgid))
			count_lost(UVM_LOST_SCOPE);
	}
#if UVM_RAW
	struct memcg_rec *r = memcg_rb.ringbuf_reserve(sizeof(struct memcg_rec));
	if (!r) {
		count_lost(UVM_LOST_MEMCG);
		return;
	}
	r->ts = bpf_ktime_get_ns();
	r->cgroup_id = cgid;
	r->val = val;
	r->pid = tgid;
	r->tid = (u32)id;
	r->item = item;
	r->kind = kind;
	bpf_get_current_comm(&r->comm, sizeof(r->comm));
	memcg_rb.ringbuf_submit(r, 0);
#else
	if (slot) {
		memcg_flush(slot, kind, item);
		slot_start(slot, bucket, owner, cgid, tgid, val);
		return;
	}
	/* an item number beyond the slots (none today): an entry of its own */
	struct agg_slot one = {};
	slot_start(&one, bucket, owner, cgid, tgid, val);
	memcg_flush(&one, kind, item);
#endif
}

#endif
