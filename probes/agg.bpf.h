/* Aggregation (see struct agg_slot in events.h): per-CPU slots on the hot path, flushed into the
 * probe's hash as immutable entries, summed per time bucket. A flush that finds the hash full is
 * a counted loss of all the updates it carried, never a silent one. */
#ifndef UVM_AGG_BPF_H
#define UVM_AGG_BPF_H

#include "scope.bpf.h"

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

BPF_PERCPU_ARRAY(agg_seq, u32, 1);

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

/* Each probe has its own flush (BCC cannot use map calls inside a macro):
 *	if (!s->count) return; key from the slot, key.seq = agg_next_seq(); slot_value(s, &v);
 *	if (map.insert(&key, &v)) count_lost_n(slot, s->count); */

#endif
