/* Page cache: pages added or removed by traced processes, summed per file and time bucket. */
BPF_HASH(filemap_agg, struct filemap_key, struct agg_val, UVM_MAX_AGG);

static __always_inline void filemap_agg_add(struct filemap_key *key, s64 delta)
{
	struct agg_val *v = filemap_agg.lookup(key);
	if (!v) {
		struct agg_val empty = {};
		agg_init(&empty);
		filemap_agg.insert(key, &empty);
		v = filemap_agg.lookup(key);
	}
	if (!v) {
		count_lost(UVM_LOST_FILEMAP);
		return;
	}
	__sync_fetch_and_add(&v->sum, delta);
	__sync_fetch_and_add(&v->count, 1);
}

static __always_inline void filemap_record(u32 kind, u64 ino, u32 dev, u32 order)
{
	u32 tgid = current_tgid();
	if (!is_target_pid(tgid))
		return;
	struct filemap_key key = {};
	key.bucket = bucket_of(bpf_ktime_get_ns());
	key.ino = ino;
	key.dev = dev;
	key.pid = tgid;
	key.kind = kind;
	filemap_agg_add(&key, (s64)1 << (order & 31));
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
