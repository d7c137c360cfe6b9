/* uvmshim: LD_PRELOAD library that records CUDA driver, NVML and libc memory calls.
 *
 * Every hook calls the real function, returns its result unchanged (errno too), and appends one
 * fixed-size record (uvmshim.h) to a per-process file mapped MAP_SHARED: no system call per
 * record, and what was written survives a crash of the host process. Any internal failure turns
 * the library into a pass-through and says so once, in a note file for the recorder.
 *
 * Three ways a hooked function is reached, all covered:
 *   1. direct calls to the exported symbol (a program linked against libcuda / libnvidia-ml);
 *   2. dlsym(handle, name) - ctypes, and cudart's own look-up of cuGetProcAddress_v2 on its
 *      private handle to libcuda (an interposed dlsym is the only way to see that one);
 *   3. cuGetProcAddress(_v2), which cudart >= 11.3 uses for every driver function: the pointers
 *      it returns are replaced by trampolines that remember the real pointer per slot.
 * No CUDA headers: the few prototypes are declared here, CUresult is int. Which functions are
 * hooked, with which ABIs and names, is declared once in functions.h; everything below that
 * names a hooked function is generated from that table.
 */
#define _GNU_SOURCE
#include "uvmshim.h"
#include "functions.h"

#include <dlfcn.h>
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <link.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/syscall.h>
#include <sys/sysinfo.h>
#include <time.h>
#include <unistd.h>

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23 /* Linux 5.14 */
#endif

#define EXPORT __attribute__((visibility("default")))
#define CALLER() ((uint64_t)(uintptr_t)__builtin_return_address(0))
#define UNPAREN(...) __VA_ARGS__

typedef int CUresult;
typedef unsigned long long CUdeviceptr;
typedef unsigned int CUdeviceptr_v1;
typedef unsigned long long cuuint64_t;
typedef unsigned long long CUmemGenericAllocationHandle;
typedef void *CUstream;
typedef void *CUmemoryPool;
typedef void *CUcontext;
typedef int CUdevice;
typedef int nvmlReturn_t;
typedef void *nvmlDevice_t;
typedef struct {
    unsigned long long total, free, used;
} nvmlMemory_t;
typedef struct {
    unsigned int version;
    unsigned long long total, reserved, free, used;
} nvmlMemory_v2_t;

enum { CUDA_ERROR_NOT_INITIALIZED = 3, NVML_ERROR_UNINITIALIZED = 1 };
/* cuGetProcAddress requests at or above this CUDA version may name ABI variants this file does
 * not know yet; those pointers are handed out unwrapped (and reported) rather than guessed. */
#define UVMSHIM_NEWEST_KNOWN_CUDA 14000

enum {
#define F_ENUM(id, name, ...) F_##name = id,
    UVMSHIM_FUNCTIONS(F_ENUM)
#undef F_ENUM
};

/* ------------------------------------------------------------------ state */

enum { ST_CLOSED, ST_OPEN, ST_OFF };

static int g_state = ST_CLOSED;
static pthread_mutex_t g_open_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t g_grow_lock = PTHREAD_MUTEX_INITIALIZER;
static int g_fd = -1;
static int g_syms_fd = -1;
static uint64_t g_syms_bytes; /* written to the .syms sidecar so far (may_grow_to) */
static struct uvmshim_header *g_hdr;
static char *g_chunks[UVMSHIM_MAX_CHUNKS];
#define CHUNK_FAILED ((char *)1)
#define CHUNK_BYTES ((size_t)UVMSHIM_CHUNK_RECORDS * UVMSHIM_RECORD_SIZE)

/* Return addresses already described in the .syms sidecar (open addressing, lock-free). */
#define SEEN_SLOTS 4096
static uint64_t g_seen[SEEN_SLOTS];

static __thread int t_tid __attribute__((tls_model("initial-exec")));
static __thread int t_busy __attribute__((tls_model("initial-exec")));

static void *(*g_real_dlsym)(void *, const char *);
static int g_reported;

static void leave_note(const char *ext, const char *why);

static void say_once(int bit, const char *msg)
{
    /* One note per kind of failure per process, in the run dir for the recorder: never on the
     * program's own stderr (its output must stay its own). */
    int old = __atomic_fetch_or(&g_reported, bit, __ATOMIC_RELAXED);
    if (old & bit)
        return;
    leave_note("note", msg);
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int my_tid(void)
{
    if (!t_tid)
        t_tid = (int)syscall(SYS_gettid);
    return t_tid;
}

/* ------------------------------------------------------- run-time linking
 * The library NEEDs libc only and names only what every libc has (glibc >= 2.17 and musl):
 * before glibc 2.34 the dl* functions lived in libdl, which minimal images do not ship, and
 * musl has neither dlvsym nor __register_atfork. Anything else is looked up at run time in the
 * dynamic symbol tables of the loaded objects (dl_iterate_phdr), the way the loader would. */

static uintptr_t g_self_lo, g_self_hi; /* our own mapped range (is_ours) */

static uint32_t gnu_hash(const char *s)
{
    uint32_t h = 5381;
    for (; *s; s++)
        h = h * 33 + (unsigned char)*s;
    return h;
}

static uint32_t sysv_hash(const char *s)
{
    uint32_t h = 0;
    for (; *s; s++) {
        h = (h << 4) + (unsigned char)*s;
        h ^= (h >> 24) & 0xf0;
    }
    return h & 0x0fffffff;
}

/* glibc relocates the d_ptr entries of _DYNAMIC in place, musl does not. */
static const void *dyn_ptr(uintptr_t base, ElfW(Addr) v)
{
    return (const void *)(v < base ? base + v : v);
}

static int defines(const ElfW(Sym) *sym, const char *strtab, const char *name)
{
    int type = sym->st_info & 0xf; /* ST_TYPE, the same for ELF32 and ELF64 */
    return sym->st_shndx != SHN_UNDEF && sym->st_value &&
           (type == STT_FUNC || type == STT_GNU_IFUNC || type == STT_OBJECT) &&
           strcmp(strtab + sym->st_name, name) == 0;
}

/* The address of `name` as defined by one loaded object, or NULL. */
static void *object_symbol(const struct dl_phdr_info *info, const char *name)
{
    uintptr_t base = info->dlpi_addr;
    const ElfW(Dyn) *dyn = NULL;
    for (int i = 0; i < info->dlpi_phnum; i++)
        if (info->dlpi_phdr[i].p_type == PT_DYNAMIC)
            dyn = (const ElfW(Dyn) *)(base + info->dlpi_phdr[i].p_vaddr);
    if (!dyn)
        return NULL;
    const ElfW(Sym) *symtab = NULL;
    const char *strtab = NULL;
    const uint32_t *gnu = NULL, *sysv = NULL;
    for (; dyn->d_tag != DT_NULL; dyn++) {
        if (dyn->d_tag == DT_SYMTAB)
            symtab = dyn_ptr(base, dyn->d_un.d_ptr);
        else if (dyn->d_tag == DT_STRTAB)
            strtab = dyn_ptr(base, dyn->d_un.d_ptr);
        else if (dyn->d_tag == DT_GNU_HASH)
            gnu = dyn_ptr(base, dyn->d_un.d_ptr);
        else if (dyn->d_tag == DT_HASH)
            sysv = dyn_ptr(base, dyn->d_un.d_ptr);
    }
    if (!symtab || !strtab)
        return NULL;
    const ElfW(Sym) *found = NULL;
    if (gnu) {
        uint32_t nbuckets = gnu[0], symoffset = gnu[1], bloom_words = gnu[2];
        const uint32_t *buckets = (const uint32_t *)((const ElfW(Addr) *)(gnu + 4) + bloom_words);
        const uint32_t *chain = buckets + nbuckets;
        uint32_t h = gnu_hash(name);
        uint32_t i = nbuckets ? buckets[h % nbuckets] : 0;
        for (; i >= symoffset && i; i++) {
            uint32_t h2 = chain[i - symoffset];
            if ((h | 1) == (h2 | 1) && defines(&symtab[i], strtab, name)) {
                found = &symtab[i];
                break;
            }
            if (h2 & 1)
                break;
        }
    } else if (sysv) {
        uint32_t nbucket = sysv[0];
        const uint32_t *bucket = sysv + 2, *chain = bucket + nbucket;
        for (uint32_t i = nbucket ? bucket[sysv_hash(name) % nbucket] : 0; i; i = chain[i])
            if (defines(&symtab[i], strtab, name)) {
                found = &symtab[i];
                break;
            }
    }
    return found ? (void *)(base + found->st_value) : NULL;
}

/* Whether a loaded object is this library; with its mapped range. */
static int object_range(const struct dl_phdr_info *info, uintptr_t *lo_out, uintptr_t *hi_out)
{
    uintptr_t lo = UINTPTR_MAX, hi = 0, me = (uintptr_t)object_range;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_LOAD)
            continue;
        uintptr_t a = info->dlpi_addr + ph->p_vaddr, b = a + ph->p_memsz;
        lo = a < lo ? a : lo;
        hi = b > hi ? b : hi;
    }
    *lo_out = lo;
    *hi_out = hi;
    return me >= lo && me < hi;
}

struct lookup {
    const char *name;
    void *after_self, *before_self;
    int seen_self;
};

static int lookup_one(struct dl_phdr_info *info, size_t size, void *data)
{
    (void)size;
    struct lookup *l = data;
    uintptr_t lo, hi;
    if (object_range(info, &lo, &hi)) {
        g_self_lo = lo;
        g_self_hi = hi;
        l->seen_self = 1;
        return 0;
    }
    if (!l->name)
        return 0;
    void *p = object_symbol(info, l->name);
    if (p && l->seen_self && !l->after_self)
        l->after_self = p;
    else if (p && !l->seen_self && !l->before_self)
        l->before_self = p;
    return l->after_self != NULL;
}

/* The definition the loader would pick for a call from here: the first after this library,
 * else one before it (the program itself). NULL: learn our own range only. */
static void *find_symbol(const char *name)
{
    struct lookup l = {.name = name};
    dl_iterate_phdr(lookup_one, &l);
    return l.after_self ? l.after_self : l.before_self;
}

static void resolve_real_dlsym(void)
{
    /* Retried until found: before glibc 2.34 there is no dlsym until libdl is loaded. */
    if (__atomic_load_n(&g_real_dlsym, __ATOMIC_ACQUIRE))
        return;
    __atomic_store_n(&g_real_dlsym, (void *(*)(void *, const char *))find_symbol("dlsym"),
                     __ATOMIC_RELEASE);
}

static void *real_dlsym(void *handle, const char *name)
{
    resolve_real_dlsym();
    return g_real_dlsym ? g_real_dlsym(handle, name) : NULL;
}

static int real_dladdr(const void *addr, Dl_info *info)
{
    static int (*fn)(const void *, Dl_info *);
    if (!fn)
        fn = (int (*)(const void *, Dl_info *))find_symbol("dladdr");
    return fn ? fn(addr, info) : 0;
}

static void *real_dlopen_noload(const char *soname)
{
    static void *(*fn)(const char *, int);
    if (!fn)
        fn = (void *(*)(const char *, int))find_symbol("dlopen");
    return fn ? fn(soname, RTLD_LAZY | RTLD_NOLOAD) : NULL;
}

/* ------------------------------------------------------------ the file */

/* Whether a file may grow to `end` bytes: past RLIMIT_FSIZE the kernel raises SIGXFSZ, which
 * kills the program (`ulimit -f`); the shim stops recording instead. */
static int may_grow_to(uint64_t end)
{
    struct rlimit rl;
    return getrlimit(RLIMIT_FSIZE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY ||
           end <= (uint64_t)rl.rlim_cur;
}

static int write_all(int fd, const char *buf, size_t len)
{
    while (len) {
        ssize_t w = write(fd, buf, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        buf += w;
        len -= (size_t)w;
    }
    return 0;
}

/* Make [off, off + len) of the record file ready for stores through a shared mapping; 0 or an
 * errno. posix_fallocate reserves the blocks (a mapped page with no block behind it would SIGBUS
 * the program on a full disk); writing zeros over them then puts the pages in the page cache,
 * dirty, in large folios. Without the zeros every page is faulted in alone: on ext4 a fault on
 * allocated-but-unwritten blocks reads and zeroes its page, ~1 us, a quarter of the shim's cost
 * per record (docs/performance.md). */
static int provision(int fd, off_t off, size_t len)
{
    static char zeros[65536]; /* never written: .bss, backed by the shared zero page */
    if (!may_grow_to((uint64_t)off + len))
        return EFBIG;
    int rc = posix_fallocate(fd, off, (off_t)len);
    for (size_t done = 0; !rc && done < len;) {
        size_t n = len - done < sizeof zeros ? len - done : sizeof zeros;
        ssize_t w = pwrite(fd, zeros, n, off + (off_t)done);
        if (w > 0)
            done += (size_t)w;
        else if (w == 0 || errno != EINTR)
            rc = w == 0 ? ENOSPC : errno;
    }
    return rc;
}

static void read_small(const char *path, char *out, size_t size)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    out[0] = 0;
    if (fd < 0)
        return;
    ssize_t n = read(fd, out, size - 1);
    close(fd);
    if (n < 0)
        n = 0;
    out[n] = 0;
    char *nl = strchr(out, '\n');
    if (nl)
        *nl = 0;
}

/* "pid:[4026531836]" -> 4026531836 (readlink, not stat: stat is a GLIBC_2.33 symbol). */
static uint64_t pid_ns_inode(void)
{
    char link[64];
    ssize_t n = readlink("/proc/self/ns/pid", link, sizeof link - 1);
    if (n <= 0)
        return 0;
    link[n] = 0;
    const char *open = strchr(link, '[');
    /* By hand: glibc >= 2.38 headers turn strtoull into __isoc23_strtoull (GLIBC_2.38), which
     * older glibc in a container does not have. */
    uint64_t v = 0;
    for (const char *c = open ? open + 1 : ""; *c >= '0' && *c <= '9'; c++)
        v = v * 10 + (uint64_t)(*c - '0');
    return v;
}

/* Tell the recorder, if it listens, who we are: it reads our pid as the kernel translates it into
 * its own pid namespace (SO_PEERCRED), so CUDA calls made inside a container join the kernel
 * events of the same process even after the process is gone. Non-blocking; failure is silent. */
/* A unix stream socket connected to <dir>/<name>, or -1. A sun_path holds at most 107 bytes:
 * a longer run directory (next to a deeply nested output file) is reached through
 * /proc/self/fd of the directory instead, as the recorder binds it. */
static int connect_in_dir(const char *dir, const char *name, int flags)
{
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    int dfd = -1;
    int n = snprintf(addr.sun_path, sizeof addr.sun_path, "%s/%s", dir, name);
    if (n <= 0 || (size_t)n >= sizeof addr.sun_path) {
        dfd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (dfd < 0)
            return -1;
        snprintf(addr.sun_path, sizeof addr.sun_path, "/proc/self/fd/%d/%s", dfd, name);
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | flags, 0);
    if (fd >= 0 && connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0) {
        close(fd);
        fd = -1;
    }
    if (dfd >= 0)
        close(dfd);
    return fd;
}

static void announce(const char *dir, uint64_t pid_ns)
{
    int fd = connect_in_dir(dir, UVMSHIM_ANNOUNCE, SOCK_NONBLOCK);
    if (fd < 0)
        return;
    char msg[64];
    int len = snprintf(msg, sizeof msg, "%llu %d\n", (unsigned long long)pid_ns, (int)getpid());
    if (send(fd, msg, (size_t)len, MSG_NOSIGNAL) < 0) {
        /* the recorder went away: nothing to tell */
    }
    close(fd);
}

/* --reclaim-before-sizing: UVMTRACE_RECLAIM="<timeout ms>:<query names>" (e.g.
 * "5000:sysinfo,cuMemGetInfo"). Before one of those queries answers, ask the recorder to drop the
 * clean page cache charged to our cgroup, and wait for its answer at most that long: the real call
 * then reports memory that is really free. Nothing is changed in what the call returns. One
 * connection per query, so threads need no lock; any failure means "go on without". */
/* Copies (the program may change its environment later), set once with g_reclaim_state. */
static char g_reclaim_names[256], g_reclaim_dir[PATH_MAX];
static int g_reclaim_timeout_ms;
static int g_reclaim_state; /* 0: environment not read yet, 1: off, 2: on */

static void read_reclaim_env(void)
{
    /* Once per process: two getenv() scans of the environment per query were ~35 ns of the
     * shim's cost. Threads racing here compute the same values. */
    const char *spec = getenv("UVMTRACE_RECLAIM");
    const char *dir = getenv("UVMTRACE_SHIM_DIR");
    int timeout_ms = 0;
    const char *c = spec ? spec : "";
    for (; *c >= '0' && *c <= '9'; c++)
        timeout_ms = timeout_ms * 10 + (*c - '0');
    int on = spec && dir && *dir && *c == ':' && timeout_ms > 0 &&
             strlen(c) < sizeof g_reclaim_names && strlen(dir) < sizeof g_reclaim_dir;
    if (on) {
        memcpy(g_reclaim_names, c, strlen(c) + 1);
        memcpy(g_reclaim_dir, dir, strlen(dir) + 1);
        g_reclaim_timeout_ms = timeout_ms;
    }
    __atomic_store_n(&g_reclaim_state, on ? 2 : 1, __ATOMIC_RELEASE);
}

static void reclaim_before_query(const char *func)
{
    int state = __atomic_load_n(&g_reclaim_state, __ATOMIC_ACQUIRE);
    if (!state) {
        read_reclaim_env();
        state = __atomic_load_n(&g_reclaim_state, __ATOMIC_ACQUIRE);
    }
    if (state != 2 || !strstr(g_reclaim_names, func))
        return;
    const char *dir = g_reclaim_dir;
    int timeout_ms = g_reclaim_timeout_ms;
    int saved_errno = errno;
    int fd = connect_in_dir(dir, UVMSHIM_RECLAIM, 0);
    if (fd >= 0) {
        char msg[128];
        int len = snprintf(msg, sizeof msg, "%llu %d %d %s\n",
                           (unsigned long long)pid_ns_inode(), (int)getpid(), my_tid(), func);
        if (len > 0 && send(fd, msg, (size_t)len, MSG_NOSIGNAL) == len) {
            struct pollfd p = {.fd = fd, .events = POLLIN};
            uint64_t deadline = now_ns() + (uint64_t)timeout_ms * 1000000ull;
            for (;;) {
                uint64_t t = now_ns();
                if (t >= deadline)
                    break;
                int r = poll(&p, 1, (int)((deadline - t) / 1000000ull) + 1);
                if (r > 0 || (r < 0 && errno != EINTR))
                    break; /* the answer (or the recorder hung up) */
            }
        }
    }
    if (fd >= 0)
        close(fd);
    errno = saved_errno;
}

static int open_file(void)
{
    const char *dir = getenv("UVMTRACE_SHIM_DIR");
    if (!dir || !*dir) {
        say_once(1, "UVMTRACE_SHIM_DIR is not set; not recording");
        return -1;
    }
    char path[PATH_MAX];
    uint64_t start = now_ns();
    int fd = -1;
    for (int attempt = 0; attempt < 8 && fd < 0; attempt++) {
        int n = snprintf(path, sizeof path, "%s/%d-%llu.uvm", dir, (int)getpid(),
                         (unsigned long long)start + (unsigned)attempt);
        if (n <= 0 || (size_t)n >= sizeof path - 8)
            break;
        fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0 && errno != EEXIST)
            break;
    }
    if (fd < 0) {
        char msg[PATH_MAX + 64];
        snprintf(msg, sizeof msg, "cannot create a file in %s: %s; not recording", dir,
                 strerror(errno));
        say_once(2, msg);
        return -1;
    }
    /* Blocks reserved and written now: a sparse file on a full disk would SIGBUS the program. */
    int rc = provision(fd, 0, UVMSHIM_HEADER_SIZE);
    void *hdr = rc ? MAP_FAILED
                   : mmap(NULL, UVMSHIM_HEADER_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (hdr == MAP_FAILED) {
        char msg[PATH_MAX + 64];
        snprintf(msg, sizeof msg, "cannot map %s: %s; not recording", path,
                 strerror(rc ? rc : errno));
        say_once(2, msg);
        close(fd);
        unlink(path);
        return -1;
    }
    struct uvmshim_header *h = hdr;
    h->version = UVMSHIM_VERSION;
    h->header_size = UVMSHIM_HEADER_SIZE;
    h->record_size = UVMSHIM_RECORD_SIZE;
    h->chunk_records = UVMSHIM_CHUNK_RECORDS;
    h->pid = (int)getpid();
    h->ppid = (int)getppid();
    h->pid_ns = pid_ns_inode();
    h->start_ns = start;
    read_small("/proc/self/comm", h->comm, sizeof h->comm);
    ssize_t n = readlink("/proc/self/exe", h->exe, sizeof h->exe - 1);
    h->exe[n > 0 ? n : 0] = 0;

    char syms[PATH_MAX + 8];
    snprintf(syms, sizeof syms, "%s.syms", path);
    g_syms_fd = open(syms, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC | O_APPEND, 0600);

    g_fd = fd;
    g_hdr = h;
    /* Magic last: the decoder skips a file whose header is not complete. */
    __atomic_store_n(&h->magic, UVMSHIM_MAGIC, __ATOMIC_RELEASE);
    announce(dir, h->pid_ns);
    return 0;
}

/* Returns 1 when records can be written. */
static int ensure_open(void)
{
    int st = __atomic_load_n(&g_state, __ATOMIC_ACQUIRE);
    if (st != ST_CLOSED)
        return st == ST_OPEN;
    pthread_mutex_lock(&g_open_lock);
    st = __atomic_load_n(&g_state, __ATOMIC_ACQUIRE);
    if (st == ST_CLOSED) {
        st = open_file() == 0 ? ST_OPEN : ST_OFF;
        __atomic_store_n(&g_state, st, __ATOMIC_RELEASE);
    }
    pthread_mutex_unlock(&g_open_lock);
    return st == ST_OPEN;
}

static char *chunk(uint64_t index)
{
    if (index >= UVMSHIM_MAX_CHUNKS)
        return NULL;
    char *c = __atomic_load_n(&g_chunks[index], __ATOMIC_ACQUIRE);
    if (c)
        return c == CHUNK_FAILED ? NULL : c;
    pthread_mutex_lock(&g_grow_lock);
    c = g_chunks[index];
    if (!c) {
        off_t off = (off_t)UVMSHIM_HEADER_SIZE + (off_t)(index * CHUNK_BYTES);
        int rc = provision(g_fd, off, CHUNK_BYTES);
        void *m = rc ? MAP_FAILED
                     : mmap(NULL, CHUNK_BYTES, PROT_READ | PROT_WRITE, MAP_SHARED, g_fd, off);
        /* Map every page writable now rather than at a record's first store (a shared file
         * mapping populated for reading, MAP_POPULATE, would still fault per page on the first
         * store: the filesystem tracks dirtying). Before Linux 5.14 (EINVAL) pages fault on
         * first use. */
        if (m != MAP_FAILED)
            (void)madvise(m, CHUNK_BYTES, MADV_POPULATE_WRITE);
        if (m == MAP_FAILED) {
            say_once(4, rc == EFBIG ? "the shim file would pass the file size limit (ulimit -f); "
                                      "later calls not recorded"
                        : rc ? "the shim file cannot grow (disk full?); later calls not recorded"
                             : "cannot map more of the shim file; later calls not recorded");
            c = CHUNK_FAILED;
        } else {
            c = m;
        }
        __atomic_store_n(&g_chunks[index], c, __ATOMIC_RELEASE);
    }
    pthread_mutex_unlock(&g_grow_lock);
    return c == CHUNK_FAILED ? NULL : c;
}

static void describe_caller(uint64_t ra)
{
    /* First sight of a call site: one dladdr and one write, never again for this address. */
    uint64_t i = (ra >> 2) * 0x9E3779B97F4A7C15ull >> 52;
    for (int probe = 0; probe < 16; probe++, i = (i + 1) & (SEEN_SLOTS - 1)) {
        uint64_t cur = __atomic_load_n(&g_seen[i], __ATOMIC_RELAXED);
        if (cur == ra)
            return;
        if (cur == 0) {
            uint64_t expected = 0;
            if (__atomic_compare_exchange_n(&g_seen[i], &expected, ra, 0, __ATOMIC_RELAXED,
                                            __ATOMIC_RELAXED))
                break;
            if (expected == ra)
                return;
        }
    }
    if (g_syms_fd < 0)
        return;
    Dl_info info;
    memset(&info, 0, sizeof info);
    if (!real_dladdr((void *)(uintptr_t)ra, &info))
        memset(&info, 0, sizeof info);
    char line[PATH_MAX + 512];
    int n = snprintf(line, sizeof line, "%llx\t%s\t%llx\t%s\t%llx\n", (unsigned long long)ra,
                     info.dli_fname ? info.dli_fname : "",
                     (unsigned long long)(uintptr_t)info.dli_fbase,
                     info.dli_sname ? info.dli_sname : "",
                     (unsigned long long)(uintptr_t)info.dli_saddr);
    /* O_APPEND + one write per line keeps lines whole across threads. */
    if (n > 0 && (size_t)n < sizeof line &&
        may_grow_to(__atomic_add_fetch(&g_syms_bytes, (uint64_t)n, __ATOMIC_RELAXED)))
        (void)write_all(g_syms_fd, line, (size_t)n);
}

/* ------------------------------------------------------- the record clock
 * Records carry CLOCK_MONOTONIC, the clock of the kernel's events (bpf_ktime_get_ns). Through the
 * vDSO it costs 18-27 ns a read on the machines measured, a third of the shim's cost per call;
 * the counter the kernel derives it from (x86 TSC, arm64 CNTVCT) costs 8. So a thread reads the
 * clock for real at most once a millisecond and in between extrapolates from its last real
 * reading with the counter's rate, measured in this process from its first tight reading on: the
 * error is the rate's error over at most 1 ms (NTP slews by < 500 ppm: < 0.5 us; measured within
 * 13 ns of the program's own clock reads, tests/test_shim.py). Only where the kernel keeps time
 * from that counter (clocksource tsc / arch_sys_counter); elsewhere every read is real. */

#if defined(__x86_64__)
#define HAVE_TICKS 1
#define TICKS_CLOCKSOURCE "tsc"
static inline uint64_t ticks(void)
{
    uint32_t lo, hi;
    __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
    return ((uint64_t)hi << 32) | lo;
}
#elif defined(__aarch64__)
#define HAVE_TICKS 1
#define TICKS_CLOCKSOURCE "arch_sys_counter"
static inline uint64_t ticks(void)
{
    uint64_t v;
    __asm__ volatile("isb; mrs %0, cntvct_el0" : "=r"(v)::"memory");
    return v;
}
#else
#define HAVE_TICKS 0
#define TICKS_CLOCKSOURCE ""
static inline uint64_t ticks(void)
{
    return 0;
}
#endif

#define EXTRAPOLATE_NS 1000000ull /* at most this long after a real reading */
#define BASELINE_NS 2000000ull    /* the rate is measured over at least this long */

static int g_ticks_state;                    /* 0: not checked yet, 1: usable, 2: not */
/* The process's tightest early reading, under a sequence count (odd while it is rewritten). */
static uint64_t g_anchor_seq, g_anchor_ticks, g_anchor_ns, g_anchor_bracket;
static uint64_t g_ns_per_tick;              /* 32.32 fixed point; 0: no rate yet */
static uint64_t g_extrapolate_ticks;        /* EXTRAPOLATE_NS in ticks */
static uint64_t g_min_bracket = UINT64_MAX; /* the tightest real reading, in ticks */
static __thread uint64_t t_cal_ticks __attribute__((tls_model("initial-exec")));
static __thread uint64_t t_cal_ns __attribute__((tls_model("initial-exec")));
static __thread uint64_t t_last_ns __attribute__((tls_model("initial-exec")));

static int ticks_usable(void)
{
    int state = __atomic_load_n(&g_ticks_state, __ATOMIC_RELAXED);
    if (!state) {
        char src[64] = "";
        if (HAVE_TICKS)
            read_small("/sys/devices/system/clocksource/clocksource0/current_clocksource", src,
                       sizeof src);
        state = HAVE_TICKS && strcmp(src, TICKS_CLOCKSOURCE) == 0 ? 1 : 2;
        __atomic_store_n(&g_ticks_state, state, __ATOMIC_RELAXED);
    }
    return state == 1;
}

/* Whether a real reading's bracket (counter reads around it) shows it was not interrupted:
 * within twice the tightest seen, plus 64 ticks. */
static int tight(uint64_t bracket, uint64_t best)
{
    return bracket <= 2 * best + 64;
}

/* A real reading, bracketed by two counter reads. Only a tight one pairs the clock with a
 * counter value precisely enough to become this thread's point to extrapolate from, and to
 * refine the rate. */
static uint64_t calibrate(void)
{
    uint64_t before = ticks(), ns = now_ns(), after = ticks();
    if (!ticks_usable() || after < before)
        return ns;
    uint64_t bracket = after - before;
    uint64_t best = __atomic_load_n(&g_min_bracket, __ATOMIC_RELAXED);
    if (bracket < best)
        __atomic_store_n(&g_min_bracket, best = bracket, __ATOMIC_RELAXED);
    if (!tight(bracket, best))
        return ns;
    uint64_t t = before + bracket / 2;
    t_cal_ticks = t;
    t_cal_ns = ns;
    uint64_t seq = __atomic_load_n(&g_anchor_seq, __ATOMIC_ACQUIRE);
    if (seq & 1)
        return ns; /* another thread is re-anchoring */
    uint64_t a_ticks = __atomic_load_n(&g_anchor_ticks, __ATOMIC_RELAXED);
    uint64_t a_ns = __atomic_load_n(&g_anchor_ns, __ATOMIC_RELAXED);
    uint64_t a_bracket = __atomic_load_n(&g_anchor_bracket, __ATOMIC_RELAXED);
    __atomic_thread_fence(__ATOMIC_ACQUIRE);
    if (__atomic_load_n(&g_anchor_seq, __ATOMIC_RELAXED) != seq)
        return ns;
    if (seq == 0 || !tight(a_bracket, best)) {
        /* No anchor yet, or tighter readings show it was interrupted: this reading is. The rate
         * waits for a new baseline. */
        if (__atomic_compare_exchange_n(&g_anchor_seq, &seq, seq + 1, 0, __ATOMIC_ACQUIRE,
                                        __ATOMIC_RELAXED)) {
            __atomic_store_n(&g_ns_per_tick, 0, __ATOMIC_RELAXED);
            __atomic_store_n(&g_anchor_ticks, t, __ATOMIC_RELAXED);
            __atomic_store_n(&g_anchor_ns, ns, __ATOMIC_RELAXED);
            __atomic_store_n(&g_anchor_bracket, bracket, __ATOMIC_RELAXED);
            __atomic_store_n(&g_anchor_seq, seq + 2, __ATOMIC_RELEASE);
        }
    } else if (ns >= a_ns + BASELINE_NS && t > a_ticks) {
        double per_tick = (double)(ns - a_ns) / (double)(t - a_ticks);
        __atomic_store_n(&g_extrapolate_ticks, (uint64_t)(EXTRAPOLATE_NS / per_tick),
                         __ATOMIC_RELAXED);
        __atomic_store_n(&g_ns_per_tick, (uint64_t)(per_tick * 4294967296.0), __ATOMIC_RELAXED);
    }
    return ns;
}

/* CLOCK_MONOTONIC for a record, never earlier than this thread's previous one (a call's end is
 * never before its start). d * rate stays far below 2^64: d < 1 ms in ticks. */
static uint64_t record_ns(void)
{
    uint64_t ns, rate = __atomic_load_n(&g_ns_per_tick, __ATOMIC_RELAXED);
    uint64_t d = ticks() - t_cal_ticks;
    if (rate && d < __atomic_load_n(&g_extrapolate_ticks, __ATOMIC_RELAXED))
        ns = t_cal_ns + ((d * rate) >> 32);
    else
        ns = calibrate();
    if (ns < t_last_ns)
        ns = t_last_ns;
    t_last_ns = ns;
    return ns;
}

struct rec {
    uint64_t t0, bytes, addr, aux, free, total, flags, caller;
    int32_t result;
    uint32_t err;
    uint16_t func, variant;
    uint8_t untimed; /* a memory query: its answer matters, not how long it took */
};

static void emit(const struct rec *r)
{
    /* One clock read per query (dur 0); calls that allocate are timed: the kernel charges
     * they cause are matched to the call's [ts, ts + dur] window. */
    uint64_t t1 = r->untimed ? r->t0 : record_ns();
    if (t_busy || !ensure_open())
        return;
    t_busy = 1;
    uint64_t slot = __atomic_fetch_add(&g_hdr->next_slot, 1, __ATOMIC_RELAXED);
    char *base = chunk(slot / UVMSHIM_CHUNK_RECORDS);
    if (!base) {
        __atomic_fetch_add(&g_hdr->dropped, 1, __ATOMIC_RELAXED);
        t_busy = 0;
        return;
    }
    struct uvmshim_record *out =
        (struct uvmshim_record *)(base + (slot % UVMSHIM_CHUNK_RECORDS) * UVMSHIM_RECORD_SIZE);
    out->ts_ns = r->t0;
    out->caller = r->caller;
    out->bytes = r->bytes;
    /* A query has no pointer or flags: its answer takes their words. */
    out->addr = r->untimed ? r->free : r->addr;
    out->aux = r->aux;
    out->flags = r->untimed ? r->total : r->flags;
    out->dur = uvmshim_dur(t1 - r->t0);
    out->tid = my_tid();
    out->result = r->result;
    uint32_t err = r->err < 255 ? r->err : 255;
    __atomic_store_n(&out->call, (uint32_t)r->func | (uint32_t)r->variant << 16 | err << 24,
                     __ATOMIC_RELEASE);
    describe_caller(r->caller);
    t_busy = 0;
}

/* ------------------------------------------------- hooks, from functions.h */
/* Everything that names a hooked function is generated from the one table in functions.h: the
 * hook bodies (impl_<name>_v<abi>: call the real function, record, return its result), the
 * trampolines per ABI variant, the name lists dlsym and cuGetProcAddress are answered from, and
 * the exported wrappers. */

#define RET_cuda CUresult
#define RET_nvml nvmlReturn_t
#define RET_libc int
/* What an exported wrapper answers while the real function cannot be found. */
#define FAIL_cuda(name, args) CUDA_ERROR_NOT_INITIALIZED
#define FAIL_nvml(name, args) NVML_ERROR_UNINITIALIZED
#define FAIL_libc(name, args) bare_##name args
enum { LIB_cuda, LIB_nvml, LIB_libc };
/* Asked by handle when RTLD_NEXT cannot see the library (it was loaded RTLD_LOCAL). */
static const char *const g_soname[] = {
    [LIB_cuda] = "libcuda.so.1", [LIB_nvml] = "libnvidia-ml.so.1", [LIB_libc] = NULL};

/* No dlsym in this process yet (glibc < 2.34 without libdl): the bare system call. */
static int bare_sysinfo(struct sysinfo *info)
{
    return (int)syscall(SYS_sysinfo, info);
}

/* Helpers of the table's `record` expressions. */
#define OUT(p) (res == 0 && (p) ? (uint64_t)(uintptr_t) * (p) : 0)
#define PTR(p) ((uint64_t)(uintptr_t)(p))

/* CUmemAllocationProp starts {int type; int handleTypes; {int type; int id} location}: keep
 * location type and id (device vs host NUMA node matters on Grace). */
static uint64_t vmm_location(const void *prop)
{
    const int *f = prop;
    return f ? ((uint64_t)(uint32_t)f[2] << 32) | (uint32_t)f[3] : 0;
}

static uint64_t nvml_reserved_v2(const nvmlMemory_v2_t *m)
{
    return m->reserved;
}
static uint64_t nvml_reserved_none(const nvmlMemory_t *m)
{
    (void)m;
    return 0;
}
#define nvml_reserved(m) \
    _Generic((m), nvmlMemory_v2_t *: nvml_reserved_v2, default: nvml_reserved_none)(m)

static uint64_t sysinfo_unit(const struct sysinfo *info)
{
    return info->mem_unit ? info->mem_unit : 1;
}

static void after_lookup(CUresult res, const char *sym, void **pfn, int ver);

/* Iteration over the table. UVMSHIM_FUNCTIONS(VARIANT_ROW) calls
 * FOR_VARIANT(id, name, lib, kind, record, abi, params, args, since, until, exports) once per ABI
 * variant of each function; EXPORTS_OF, as FOR_VARIANT, calls
 * FOR_EXPORT(name, lib, abi, params, args, symbol) once per exported name of the variant. (Two
 * sets of macros: one cannot expand inside itself.) */
#define APPLY(m, ...) m(__VA_ARGS__)
#define EACH(M, c, ...) EACH_N(__VA_ARGS__, EACH4, EACH3, EACH2, EACH1, -)(M, c, __VA_ARGS__)
#define EACH_N(_1, _2, _3, _4, n, ...) n
#define EACH1(M, c, x) APPLY(M, UNPAREN c, UNPAREN x)
#define EACH2(M, c, x, ...) EACH1(M, c, x) EACH1(M, c, __VA_ARGS__)
#define EACH3(M, c, x, ...) EACH1(M, c, x) EACH2(M, c, __VA_ARGS__)
#define EACH4(M, c, x, ...) EACH1(M, c, x) EACH3(M, c, __VA_ARGS__)
#define APPLY_E(m, ...) m(__VA_ARGS__)
#define EACH_E(M, c, ...) EACH_N(__VA_ARGS__, EACH_E4, EACH_E3, EACH_E2, EACH_E1, -)(M, c, __VA_ARGS__)
#define EACH_E1(M, c, x) APPLY_E(M, UNPAREN c, x)
#define EACH_E2(M, c, x, ...) EACH_E1(M, c, x) EACH_E1(M, c, __VA_ARGS__)
#define EACH_E3(M, c, x, ...) EACH_E1(M, c, x) EACH_E2(M, c, __VA_ARGS__)
#define EACH_E4(M, c, x, ...) EACH_E1(M, c, x) EACH_E3(M, c, __VA_ARGS__)

#define VARIANT_ROW(id, name, lib, kind, memory, bytes, flags, aux, record, variants) \
    EACH(FOR_VARIANT, (id, name, lib, kind, record), UNPAREN variants)
#define EXPORTS_OF(id, name, lib, kind, record, abi, params, args, since, until, exports) \
    EACH_E(FOR_EXPORT, (name, lib, abi, params, args), UNPAREN exports)

/* The hook bodies: impl_<name>_v<abi>(real, caller, args...). A query reads the clock once (its
 * answer is what counts) and may have page cache reclaimed before it answers; every other
 * recorded call is timed; a lookup records nothing and does `record` after the call. */
#define RECORDED(query, name, abi, ret, params, args, record)                                   \
    if (query)                                                                                  \
        reclaim_before_query(#name);                                                            \
    struct rec r = {                                                                            \
        .t0 = record_ns(), .caller = caller, .func = F_##name, .variant = abi,                 \
        .untimed = query};                                                                      \
    ret res = ((ret(*) params)real)args;                                                        \
    int saved_errno = errno;                                                                    \
    r.result = res;                                                                             \
    (void)record;                                                                               \
    emit(&r);                                                                                   \
    errno = saved_errno;                                                                        \
    return res;
#define BODY_query(...) RECORDED(1, __VA_ARGS__)
#define BODY_alloc(...) RECORDED(0, __VA_ARGS__)
#define BODY_free(...) RECORDED(0, __VA_ARGS__)
#define BODY_register(...) RECORDED(0, __VA_ARGS__)
#define BODY_unregister(...) RECORDED(0, __VA_ARGS__)
#define BODY_map(...) RECORDED(0, __VA_ARGS__)
#define BODY_unmap(...) RECORDED(0, __VA_ARGS__)
#define BODY_context(...) RECORDED(0, __VA_ARGS__)
#define BODY_lookup(name, abi, ret, params, args, record) \
    (void)caller;                                         \
    ret res = ((ret(*) params)real)args;                  \
    int saved_errno = errno;                              \
    (void)record;                                         \
    errno = saved_errno;                                  \
    return res;

#define IMPL(id, name, lib, kind, record, abi, params, args, since, until, exports)     \
    static RET_##lib impl_##name##_v##abi(void *real, uint64_t caller, UNPAREN params) \
    {                                                                                  \
        BODY_##kind(name, abi, RET_##lib, params, args, record)                        \
    }
#define FOR_VARIANT IMPL
UVMSHIM_FUNCTIONS(VARIANT_ROW)
#undef FOR_VARIANT

/* ------------------------------------------------------ variants and slots */
/* One variant per ABI (function + signature). Each has SLOTS trampolines: distinct real pointers
 * for the same ABI (e.g. the per-thread-stream _ptsz flavour, a second libcuda) get their own. */

#define V_ENUM(id, name, lib, kind, record, abi, ...) V_##name##_v##abi,
enum {
#define FOR_VARIANT V_ENUM
    UVMSHIM_FUNCTIONS(VARIANT_ROW)
#undef FOR_VARIANT
        N_VARIANTS
};

#define SLOTS 4
static void *g_slot_real[N_VARIANTS][SLOTS];

#define TRAMP(v, i, ret, params, args)                                     \
    static ret tramp_##v##_##i params                                      \
    {                                                                      \
        return impl_##v(g_slot_real[V_##v][i], CALLER(), UNPAREN args);    \
    }
#define TRAMPS(v, ret, params, args) \
    TRAMP(v, 0, ret, params, args)   \
    TRAMP(v, 1, ret, params, args)   \
    TRAMP(v, 2, ret, params, args)   \
    TRAMP(v, 3, ret, params, args)
#define V_TRAMPS(id, name, lib, kind, record, abi, params, args, ...) \
    TRAMPS(name##_v##abi, RET_##lib, params, args)
#define FOR_VARIANT V_TRAMPS
UVMSHIM_FUNCTIONS(VARIANT_ROW)
#undef FOR_VARIANT

#define TRAMP_ROW(v) [V_##v] = {(void *)tramp_##v##_0, (void *)tramp_##v##_1, \
                                (void *)tramp_##v##_2, (void *)tramp_##v##_3},
#define V_TABLE(id, name, lib, kind, record, abi, ...) TRAMP_ROW(name##_v##abi)
static void *const g_tramps[N_VARIANTS][SLOTS] = {
#define FOR_VARIANT V_TABLE
    UVMSHIM_FUNCTIONS(VARIANT_ROW)
#undef FOR_VARIANT
};

static void count_passthrough(const char *why)
{
    if (ensure_open())
        __atomic_fetch_add(&g_hdr->passthrough, 1, __ATOMIC_RELAXED);
    say_once(8, why);
}

static int is_ours(void *p)
{
    return (uintptr_t)p >= g_self_lo && (uintptr_t)p < g_self_hi;
}

/* The trampoline for `real` in variant v (the same one each time for the same pointer). */
static void *wrap(int v, void *real)
{
    if (!real || is_ours(real))
        return real;
    for (int i = 0; i < SLOTS; i++) {
        void *cur = __atomic_load_n(&g_slot_real[v][i], __ATOMIC_ACQUIRE);
        if (cur == NULL) {
            void *expected = NULL;
            if (__atomic_compare_exchange_n(&g_slot_real[v][i], &expected, real, 0,
                                            __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
                return g_tramps[v][i];
            cur = expected;
        }
        if (cur == real)
            return g_tramps[v][i];
    }
    count_passthrough("more distinct function pointers than trampoline slots; "
                      "calls through the extra ones are not recorded");
    return real;
}

/* ------------------------------------------------------ names -> variants */

/* cuGetProcAddress names carry no suffix: the requested CUDA version picks the ABI,
 * since <= version < until (until 0: no end). */
struct variant {
    const char *name;
    int lib, since, until;
};
#define V_INFO(id, name, lib, kind, record, abi, params, args, since, until, exports) \
    [V_##name##_v##abi] = {#name, LIB_##lib, since, until},
static const struct variant g_variants[N_VARIANTS] = {
#define FOR_VARIANT V_INFO
    UVMSHIM_FUNCTIONS(VARIANT_ROW)
#undef FOR_VARIANT
};

/* Exported names (what dlsym and direct callers use). */
struct export_name {
    const char *name;
    int variant;
};
#define FOR_VARIANT EXPORTS_OF
#define E_ENUM(name, lib, abi, params, args, symbol) E_##symbol,
enum {
#define FOR_EXPORT E_ENUM
    UVMSHIM_FUNCTIONS(VARIANT_ROW)
#undef FOR_EXPORT
        N_EXPORTS
};
#define E_ENTRY(name, lib, abi, params, args, symbol) [E_##symbol] = {#symbol, V_##name##_v##abi},
static const struct export_name g_exports[N_EXPORTS] = {
#define FOR_EXPORT E_ENTRY
    UVMSHIM_FUNCTIONS(VARIANT_ROW)
#undef FOR_EXPORT
};

static int export_variant(const char *name)
{
    for (int i = 0; i < N_EXPORTS; i++)
        if (strcmp(g_exports[i].name, name) == 0)
            return g_exports[i].variant;
    return -1;
}

/* The variant cuGetProcAddress(sym, ver) hands out; -1: not a hooked driver function, -2: a
 * hooked one whose ABI at this version is not wrapped (other arguments). */
static int proc_variant(const char *sym, int ver)
{
    int known = 0;
    for (int v = 0; v < N_VARIANTS; v++) {
        const struct variant *x = &g_variants[v];
        if (x->lib != LIB_cuda || strcmp(x->name, sym) != 0)
            continue;
        known = 1;
        if (ver >= x->since && (x->until == 0 || ver < x->until))
            return v;
    }
    if (known)
        return -2;
    /* cuGetProcAddress("cuMemAlloc_v2") style names. */
    int v = export_variant(sym);
    return v >= 0 && g_variants[v].lib == LIB_cuda ? v : -1;
}

static void *wrap_proc(const char *sym, int ver, void *real)
{
    if (!sym || !real)
        return real;
    int v = proc_variant(sym, ver);
    if (v == -1)
        return real; /* not a memory function */
    if (ensure_open())
        __atomic_fetch_add(&g_hdr->lookups, 1, __ATOMIC_RELAXED);
    if (v < 0) {
        /* e.g. cuCtxCreate_v3/_v4 (other arguments): handed out as is, on purpose; counted only.
         * Frameworks create contexts with cuDevicePrimaryCtxRetain, which is recorded. */
        if (ensure_open())
            __atomic_fetch_add(&g_hdr->passthrough, 1, __ATOMIC_RELAXED);
        return real;
    }
    if (ver >= UVMSHIM_NEWEST_KNOWN_CUDA) {
        count_passthrough("cuGetProcAddress asked for a CUDA version newer than this shim knows; "
                          "memory calls from that caller are not recorded");
        return real;
    }
    return wrap(v, real);
}

/* cuGetProcAddress(_v2), after the real call: hand out our trampoline instead. */
static void after_lookup(CUresult res, const char *sym, void **pfn, int ver)
{
    if (res == 0 && pfn && !t_busy) {
        t_busy = 1;
        *pfn = wrap_proc(sym, ver, *pfn);
        t_busy = 0;
    }
}

/* ------------------------------------------------------- direct exports */

static void *g_direct_real[N_EXPORTS];

static void *direct_real(int e)
{
    void *p = __atomic_load_n(&g_direct_real[e], __ATOMIC_ACQUIRE);
    if (!p) {
        /* RTLD_NEXT from here: the definition after this library (libcuda, libc). A library
         * loaded RTLD_LOCAL is not in that scope, yet its own pointers can still lead here
         * (its internal references bind to our preloaded export): ask it by handle then. */
        const char *name = g_exports[e].name;
        p = real_dlsym(RTLD_NEXT, name);
        const char *soname = g_soname[g_variants[g_exports[e].variant].lib];
        if (!p && soname) {
            void *h = real_dlopen_noload(soname);
            p = h ? real_dlsym(h, name) : NULL;
        }
        if (p && is_ours(p))
            p = NULL;
        __atomic_store_n(&g_direct_real[e], p, __ATOMIC_RELEASE);
    }
    return p;
}

#define DIRECT(name, lib, abi, params, args, symbol)                  \
    EXPORT RET_##lib symbol params                                    \
    {                                                                 \
        void *real = direct_real(E_##symbol);                         \
        if (!real)                                                    \
            return FAIL_##lib(symbol, args);                          \
        return impl_##name##_v##abi(real, CALLER(), UNPAREN args);    \
    }
#define FOR_EXPORT DIRECT
UVMSHIM_FUNCTIONS(VARIANT_ROW)
#undef FOR_EXPORT
#undef FOR_VARIANT

/* ----------------------------------------------------------------- dlsym */

static int maybe_hooked(const char *name)
{
    /* A quick first look: does any exported name start with the same two characters? */
    if (!name || !name[0])
        return 0;
    for (int i = 0; i < N_EXPORTS; i++)
        if (g_exports[i].name[0] == name[0] && g_exports[i].name[1] == name[1])
            return 1;
    return 0;
}

EXPORT void *dlsym(void *handle, const char *name)
{
    resolve_real_dlsym();
    void *(*real)(void *, const char *) = g_real_dlsym;
    if (!real)
        return NULL;
    /* RTLD_NEXT resolves relative to the caller's object: this must stay a sibling call so
     * glibc sees the application's return address, not ours. */
    if (handle == RTLD_NEXT || !maybe_hooked(name))
        return real(handle, name);
    int v = export_variant(name);
    void *p = real(handle, name);
    if (v < 0 || !p || t_busy)
        return p;
    if (is_ours(p)) {
        /* RTLD_DEFAULT finds our export first; answer NULL when nothing real stands behind it. */
        return real_dlsym(RTLD_NEXT, name) ? p : NULL;
    }
    t_busy = 1;
    if (ensure_open())
        __atomic_fetch_add(&g_hdr->lookups, 1, __ATOMIC_RELAXED);
    void *w = wrap(v, p);
    t_busy = 0;
    return w;
}

/* ------------------------------------------------------- process life */

static void after_fork_child(void)
{
    /* The child must never write into the parent's file: forget it and start a new one lazily. */
    for (int i = 0; i < UVMSHIM_MAX_CHUNKS; i++) {
        if (g_chunks[i] && g_chunks[i] != CHUNK_FAILED)
            munmap(g_chunks[i], CHUNK_BYTES);
        g_chunks[i] = NULL;
    }
    if (g_hdr)
        munmap(g_hdr, UVMSHIM_HEADER_SIZE);
    g_hdr = NULL;
    if (g_fd >= 0)
        close(g_fd);
    if (g_syms_fd >= 0)
        close(g_syms_fd);
    g_fd = g_syms_fd = -1;
    g_syms_bytes = 0;
    memset(g_seen, 0, sizeof g_seen);
    pthread_mutex_init(&g_open_lock, NULL);
    pthread_mutex_init(&g_grow_lock, NULL);
    t_tid = 0;
    t_busy = 0;
    g_reported = 0;
    __atomic_store_n(&g_state, ST_CLOSED, __ATOMIC_RELEASE);
}

/* A one-line note for the recorder, "<why>\t<exe>" in <run dir>/<ns pid>-<ns>.<ext>: `.off` when
 * this process runs without recording, `.note` for a failure worth knowing. Best effort. */
static void leave_note(const char *ext, const char *why)
{
    const char *dir = getenv("UVMTRACE_SHIM_DIR");
    if (!dir || !*dir)
        return;
    char path[PATH_MAX], note[PATH_MAX + 512], exe[PATH_MAX];
    int n = snprintf(path, sizeof path, "%s/%d-%llu.%s", dir, (int)getpid(),
                     (unsigned long long)now_ns(), ext);
    if (n <= 0 || (size_t)n >= sizeof path)
        return;
    ssize_t e = readlink("/proc/self/exe", exe, sizeof exe - 1);
    exe[e > 0 ? e : 0] = 0;
    int len = snprintf(note, sizeof note, "%s\t%s\n", why, exe);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0)
        return;
    if (len > 0 && may_grow_to((uint64_t)len))
        (void)write_all(fd, note, (size_t)len < sizeof note ? (size_t)len : sizeof note - 1);
    close(fd);
}

/* Bow out: every hook passes through, no file is written, and a note says why. */
static void bow_out(const char *why)
{
    __atomic_store_n(&g_state, ST_OFF, __ATOMIC_RELEASE);
    leave_note("off", why);
}

typedef int (*register_atfork_t)(void (*)(void), void (*)(void), void (*)(void), void *);
extern void *__dso_handle __attribute__((weak, visibility("hidden")));

__attribute__((constructor)) static void uvmshim_init(void)
{
    find_symbol(NULL); /* our own address range, for is_ours */
    /* CUDA and NVML exist for glibc only; another libc (musl: Alpine, static Go/Rust tools
     * built against it) gets no recording rather than a guess at its ABI. */
    if (!find_symbol("gnu_get_libc_version")) {
        bow_out("not a glibc program (musl?)");
        return;
    }
    resolve_real_dlsym();
    /* pthread_atfork is a static stub in glibc's libc_nonshared.a over this (GLIBC_2.3.2). */
    register_atfork_t reg = (register_atfork_t)find_symbol("__register_atfork");
    if (!reg || reg(NULL, NULL, after_fork_child, &__dso_handle) != 0)
        bow_out("cannot register a fork handler");
}
