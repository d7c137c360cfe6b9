/* Page cache: pages added or removed by traced processes, summed per file and time bucket. */
#include "agg.bpf.h"
BPF_PERCPU_ARRAY(filemap_slots, struct agg_slot, 2); /* enum uvm_filemap_kind */
BPF_HASH(filemap_agg, struct filemap_key, struct agg_val, UVM_MAX_AGG);

static __always_inline void filemap_flush(struct agg_slot *s, u32 kind)
{
	if (!s->count)
		return;
	struct filemap_key key = {};
	key.bucket = s->bucket;
	key.ino = s->owner;
	key.dev = (u32)s->key2;
	key.pid = s->pid;
	key.kind = kind;
	key.seq = agg_next_seq();
	struct agg_val v = {};
	slot_value(s, &v);
	if (filemap_agg.insert(&key, &v))
		count_lost_n(UVM_LOST_FILEMAP, s->count);
}

static __always_inline void filemap_record(u32 kind, u64 ino, u32 dev, u32 order)
{
	u32 tgid = current_tgid();
	u64 bucket = bucket_now();
	s64 pages = (s64)1 << (order & 31);
	struct agg_slot *s = filemap_slots.lookup(&kind);
	if (!s)
		return;
	if (s->count && s->owner == ino && s->key2 == dev && s->pid == tgid && s->bucket == bucket) {
		s->sum += pages;
		s->count++;
		return;
	}
	if (!is_target_pid(tgid))
		return;
	filemap_flush(s, kind);
	slot_start(s, bucket, ino, dev, tgid, pages);
}

int tp_filemap_add(struct tracepoint__filemap__mm_filemap_add_to_page_cache *args)
{
	filemap_record(UVM_FILEMAP_ADD, args->i_ino, args->s_dev, args->order);
	return 0;
}

int tp_filemap_delete(struct tracepoint__filemap__mm_filemap_delete_from_page_cache *args)
{
	filemap_record(UVM_FILEMAP_DELETE, args->i_ino, args->s_dev, args->order);
	return 0;
}
