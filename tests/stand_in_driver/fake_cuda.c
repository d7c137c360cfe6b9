/* Test-only stand-in for libcuda.so.1: deterministic answers, no GPU. Exports the functions the
 * shim hooks under their real names and resolves cuGetProcAddress look-ups by requested version
 * like the real driver (3020+ -> _v2, per-thread-stream flag -> _ptsz, 12000+ -> _v2 itself). */
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef int CUresult;
typedef unsigned long long CUdeviceptr;
typedef unsigned long long cuuint64_t;
typedef void *CUstream;

#define TOTAL (16ULL << 30)
#define GRAIN (2ULL << 20)
#define MAX_LIVE 4096
enum { OK = 0, INVALID_VALUE = 1, OUT_OF_MEMORY = 2, NOT_FOUND = 500 };

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned long long used;
static CUdeviceptr next_addr = 0x7f0000000000ULL;
static CUdeviceptr live_addr[MAX_LIVE];
static size_t live_size[MAX_LIVE];

CUresult cuInit(unsigned int flags) { return flags ? INVALID_VALUE : OK; }

CUresult cuMemGetInfo_v2(size_t *free_b, size_t *total_b)
{
    if (!free_b || !total_b)
        return INVALID_VALUE;
    pthread_mutex_lock(&lock);
    *free_b = TOTAL - used;
    *total_b = TOTAL;
    pthread_mutex_unlock(&lock);
    return OK;
}

CUresult cuMemGetInfo(unsigned int *free_b, unsigned int *total_b)
{
    size_t f, t;
    CUresult r = cuMemGetInfo_v2(&f, &t);
    if (r == OK) {
        *free_b = (unsigned)(f > 0xffffffffu ? 0xffffffffu : f);
        *total_b = (unsigned)(t > 0xffffffffu ? 0xffffffffu : t);
    }
    return r;
}

static CUresult take(CUdeviceptr *p, size_t n)
{
    if (!p || !n)
        return INVALID_VALUE;
    CUresult r = OUT_OF_MEMORY;
    pthread_mutex_lock(&lock);
    for (int i = 0; i < MAX_LIVE && n <= TOTAL - used; i++) {
        if (live_addr[i])
            continue;
        live_addr[i] = *p = next_addr;
        live_size[i] = n;
        next_addr += (n + GRAIN - 1) / GRAIN * GRAIN;
        used += n;
        r = OK;
        break;
    }
    pthread_mutex_unlock(&lock);
    return r;
}

static CUresult give(CUdeviceptr p)
{
    CUresult r = INVALID_VALUE;
    pthread_mutex_lock(&lock);
    for (int i = 0; i < MAX_LIVE; i++) {
        if (p && live_addr[i] == p) {
            live_addr[i] = 0;
            used -= live_size[i];
            r = OK;
            break;
        }
    }
    pthread_mutex_unlock(&lock);
    return r;
}

CUresult cuMemAlloc_v2(CUdeviceptr *p, size_t n) { return take(p, n); }
CUresult cuMemFree_v2(CUdeviceptr p) { return give(p); }
CUresult cuMemAllocManaged(CUdeviceptr *p, size_t n, unsigned int flags)
{
    return flags == 1 || flags == 2 ? take(p, n) : INVALID_VALUE;
}
CUresult cuMemAllocAsync(CUdeviceptr *p, size_t n, CUstream s) { (void)s; return take(p, n); }
CUresult cuMemAllocAsync_ptsz(CUdeviceptr *p, size_t n, CUstream s) { (void)s; return take(p, n); }
CUresult cuMemFreeAsync(CUdeviceptr p, CUstream s) { (void)s; return give(p); }

CUresult cuMemHostAlloc(void **p, size_t n, unsigned int flags)
{
    (void)flags;
    if (!p)
        return INVALID_VALUE;
    *p = malloc(n);
    return *p ? OK : OUT_OF_MEMORY;
}
CUresult cuMemFreeHost(void *p)
{
    free(p);
    return OK;
}

CUresult cuDevicePrimaryCtxRetain(void **ctx, int dev)
{
    if (!ctx || dev != 0)
        return 101; /* CUDA_ERROR_INVALID_DEVICE */
    *ctx = (void *)0xc0ffee00;
    return OK;
}

CUresult cuCtxCreate_v3(void **ctx, void *affinity, int n, unsigned int flags, int dev)
{
    (void)affinity;
    if (!ctx || dev != 0 || n < 0)
        return 101; /* CUDA_ERROR_INVALID_DEVICE */
    *ctx = (void *)(uintptr_t)(0xc0ffee00u + (flags & 0xffu));
    return OK;
}

CUresult cuGetProcAddress(const char *sym, void **pfn, int ver, cuuint64_t flags);
CUresult cuGetProcAddress_v2(const char *sym, void **pfn, int ver, cuuint64_t flags, int *status);

struct entry {
    const char *name;
    void *fn;
};
static const struct entry table[] = {
    {"cuInit", (void *)cuInit},
    {"cuMemGetInfo", (void *)cuMemGetInfo},
    {"cuMemGetInfo_v2", (void *)cuMemGetInfo_v2},
    {"cuMemAlloc_v2", (void *)cuMemAlloc_v2},
    {"cuMemFree_v2", (void *)cuMemFree_v2},
    {"cuMemAllocManaged", (void *)cuMemAllocManaged},
    {"cuMemAllocAsync", (void *)cuMemAllocAsync},
    {"cuMemAllocAsync_ptsz", (void *)cuMemAllocAsync_ptsz},
    {"cuMemFreeAsync", (void *)cuMemFreeAsync},
    {"cuMemHostAlloc", (void *)cuMemHostAlloc},
    {"cuMemFreeHost", (void *)cuMemFreeHost},
    {"cuDevicePrimaryCtxRetain", (void *)cuDevicePrimaryCtxRetain},
    {"cuCtxCreate_v3", (void *)cuCtxCreate_v3},
    {"cuGetProcAddress", (void *)cuGetProcAddress},
    {"cuGetProcAddress_v2", (void *)cuGetProcAddress_v2},
};

static void *lookup(const char *sym, int ver, cuuint64_t flags)
{
    char name[128];
    const char *suffix = "";
    if (ver >= 3020 && (!strcmp(sym, "cuMemGetInfo") || !strcmp(sym, "cuMemAlloc") ||
                        !strcmp(sym, "cuMemFree")))
        suffix = "_v2";
    if (ver >= 11040 && ver < 12050 && !strcmp(sym, "cuCtxCreate"))
        suffix = "_v3";
    if (ver >= 12000 && !strcmp(sym, "cuGetProcAddress"))
        suffix = "_v2";
    if ((flags & 2) && !strcmp(sym, "cuMemAllocAsync"))
        suffix = "_ptsz";
    if (strlen(sym) + strlen(suffix) >= sizeof name)
        return NULL;
    strcpy(name, sym);
    strcat(name, suffix);
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
        if (!strcmp(table[i].name, name))
            return table[i].fn;
    return NULL;
}

CUresult cuGetProcAddress_v2(const char *sym, void **pfn, int ver, cuuint64_t flags, int *status)
{
    if (!sym || !pfn)
        return INVALID_VALUE;
    *pfn = lookup(sym, ver, flags);
    if (status)
        *status = *pfn ? 0 : 1;
    return *pfn ? OK : NOT_FOUND;
}

CUresult cuGetProcAddress(const char *sym, void **pfn, int ver, cuuint64_t flags)
{
    return cuGetProcAddress_v2(sym, pfn, ver, flags, NULL);
}
