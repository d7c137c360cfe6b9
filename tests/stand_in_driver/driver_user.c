/* Test program: uses the stand-in driver the ways real programs do and prints every result, so
 * a test can compare a run under the shim with a run without it, and with the records.
 *   direct        calls linked driver/NVML/libc functions
 *   procaddr      dlopen + dlsym("cuGetProcAddress_v2") + self look-up, like cudart >= 11.3
 *   threads N M   N threads x M cuMemGetInfo_v2 calls
 *   forkexec      fork (child records, then execs `direct`), fork without exec, parent records
 *   loop          cuMemAlloc_v2 + cuMemFree_v2 forever, printing the pairs done every 1000
 *   dlsym_next    dlsym(RTLD_NEXT, "sysinfo") must resolve relative to this program
 *   freeram       one sysinfo() call; prints the free bytes it returned (freeram x mem_unit)
 *   clocked N M   N threads x M (cuMemGetInfo_v2, cuMemAlloc_v2) each between two
 *                 CLOCK_MONOTONIC reads, a 1.5 ms sleep every 1000; prints
 *                 "<tid> <call> <before ns> <after ns>" per call */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sysinfo.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

typedef int CUresult;
typedef unsigned long long CUdeviceptr;
typedef unsigned long long cuuint64_t;
typedef struct {
    unsigned long long total, free, used;
} nvmlMemory_t;
typedef struct {
    unsigned int version;
    unsigned long long total, reserved, free, used;
} nvmlMemory_v2_t;

CUresult cuInit(unsigned int);
CUresult cuMemGetInfo_v2(size_t *, size_t *);
CUresult cuMemAlloc_v2(CUdeviceptr *, size_t);
CUresult cuMemFree_v2(CUdeviceptr);
CUresult cuMemAllocManaged(CUdeviceptr *, size_t, unsigned int);
CUresult cuMemHostAlloc(void **, size_t, unsigned int);
CUresult cuMemFreeHost(void *);
CUresult cuDevicePrimaryCtxRetain(void **, int);
int nvmlInit_v2(void);
int nvmlDeviceGetHandleByIndex_v2(unsigned int, void **);
int nvmlDeviceGetMemoryInfo(void *, nvmlMemory_t *);
int nvmlDeviceGetMemoryInfo_v2(void *, nvmlMemory_v2_t *);

typedef CUresult (*gpa_v2_t)(const char *, void **, int, cuuint64_t, int *);
typedef CUresult (*gpa_v1_t)(const char *, void **, int, cuuint64_t);
typedef CUresult (*getinfo_t)(size_t *, size_t *);
typedef CUresult (*alloc_t)(CUdeviceptr *, size_t);
typedef CUresult (*free_t)(CUdeviceptr);
typedef CUresult (*alloc_async_t)(CUdeviceptr *, size_t, void *);

static int direct(void)
{
    size_t f = 0, t = 0;
    CUdeviceptr p = 0, m = 0;
    void *h = NULL, *ctx = NULL, *dev = NULL;
    printf("cuInit %d\n", cuInit(0));
    { int rc_ = cuDevicePrimaryCtxRetain(&ctx, 0); printf("cuDevicePrimaryCtxRetain %d %p\n", rc_, ctx); }
    { int rc_ = cuMemGetInfo_v2(&f, &t); printf("cuMemGetInfo %d %zu %zu\n", rc_, f, t); }
    { int rc_ = cuMemAlloc_v2(&p, 3 << 20); printf("cuMemAlloc %d 0x%llx\n", rc_, p); }
    printf("cuMemAlloc(huge) %d\n", cuMemAlloc_v2(&m, 1ULL << 40));
    { int rc_ = cuMemGetInfo_v2(&f, &t); printf("cuMemGetInfo %d %zu %zu\n", rc_, f, t); }
    { int rc_ = cuMemAllocManaged(&m, 1 << 20, 1); printf("cuMemAllocManaged %d 0x%llx\n", rc_, m); }
    printf("cuMemAllocManaged(bad flags) %d\n", cuMemAllocManaged(&m, 1 << 20, 7));
    printf("cuMemHostAlloc %d\n", cuMemHostAlloc(&h, 4096, 0));
    printf("cuMemFreeHost %d\n", cuMemFreeHost(h));
    printf("cuMemFree %d\n", cuMemFree_v2(p));
    printf("cuMemFree(again) %d\n", cuMemFree_v2(p));
    nvmlMemory_t mem = {0};
    nvmlMemory_v2_t mem2 = {.version = 0};
    nvmlInit_v2();
    nvmlDeviceGetHandleByIndex_v2(0, &dev);
    { int rc_ = nvmlDeviceGetMemoryInfo(dev, &mem); printf("nvmlDeviceGetMemoryInfo %d %llu %llu\n", rc_, mem.free,
           mem.total); }
    printf("nvmlDeviceGetMemoryInfo_v2(bad version) %d\n", nvmlDeviceGetMemoryInfo_v2(dev, &mem2));
    mem2.version = (unsigned)(sizeof mem2 | (2 << 24));
    { int rc_ = nvmlDeviceGetMemoryInfo_v2(dev, &mem2);
      printf("nvmlDeviceGetMemoryInfo_v2 %d %llu %llu\n", rc_, mem2.free, mem2.total); }
    struct sysinfo si;
    int r = sysinfo(&si);
    printf("sysinfo %d %lu %u\n", r, si.totalram, si.mem_unit);
    errno = 0;
    r = sysinfo(NULL);
    printf("sysinfo(NULL) %d %s\n", r, strerror(errno));
    errno = 1234;
    cuMemGetInfo_v2(&f, &t);
    printf("errno kept %d\n", errno);
    return 0;
}

static int procaddr(void)
{
    void *lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
    gpa_v2_t gpa = lib ? (gpa_v2_t)dlsym(lib, "cuGetProcAddress_v2") : NULL;
    if (!gpa) {
        printf("no cuGetProcAddress_v2: %s\n", dlerror());
        return 1;
    }
    int st = -1;
    gpa_v2_t self = NULL;
    gpa_v1_t self_v1 = NULL;
    printf("self %d\n", gpa("cuGetProcAddress", (void **)&self, 12000, 0, &st));
    printf("self_v1 %d\n", self("cuGetProcAddress", (void **)&self_v1, 11030, 0, &st));
    getinfo_t getinfo = NULL;
    alloc_t alloc = NULL, alloc_v1path = NULL;
    free_t release = NULL;
    alloc_async_t alloc_async = NULL, alloc_async_ptsz = NULL;
    self("cuMemGetInfo", (void **)&getinfo, 3020, 0, &st);
    self("cuMemAlloc", (void **)&alloc, 3020, 0, &st);
    self("cuMemFree", (void **)&release, 3020, 0, &st);
    self("cuMemAllocAsync", (void **)&alloc_async, 11020, 0, &st);
    self("cuMemAllocAsync", (void **)&alloc_async_ptsz, 11020, 2, &st);
    self_v1("cuMemAlloc", (void **)&alloc_v1path, 3020, 0);
    CUresult (*ctx_create)(void **, void *, int, unsigned int, int) = NULL;
    self("cuCtxCreate", (void **)&ctx_create, 11040, 0, &st);
    { int rc_ = self("cuNoSuchThing", (void **)&alloc, 3020, 0, &st); printf("missing %d %d\n", rc_, st); }
    self("cuMemAlloc", (void **)&alloc, 3020, 0, &st);
    size_t f = 0, t = 0;
    CUdeviceptr a = 0, b = 0, c = 0, d = 0;
    { int rc_ = getinfo(&f, &t); printf("getinfo %d %zu %zu\n", rc_, f, t); }
    { int rc_ = alloc(&a, 5 << 20); printf("alloc %d 0x%llx\n", rc_, a); }
    { int rc_ = alloc_async(&b, 1 << 20, NULL); printf("alloc_async %d 0x%llx\n", rc_, b); }
    { int rc_ = alloc_async_ptsz(&c, 1 << 20, NULL); printf("alloc_async_ptsz %d 0x%llx\n", rc_, c); }
    { int rc_ = alloc_v1path(&d, 1 << 20); printf("alloc_v1path %d 0x%llx\n", rc_, d); }
    void *ctx = NULL;
    { int rc_ = ctx_create(&ctx, NULL, 0, 4, 0); printf("ctx_create %d %p\n", rc_, ctx); }
    printf("free %d\n", release(a));
    printf("distinct ptsz %d\n", alloc_async != alloc_async_ptsz);
    return 0;
}

static int per_thread;
static void *hammer(void *arg)
{
    (void)arg;
    size_t f, t;
    for (int i = 0; i < per_thread; i++)
        if (cuMemGetInfo_v2(&f, &t) != 0)
            abort();
    return NULL;
}

/* n threads, each running `body` (which reads per_thread = m), joined. */
static void run_threads(int n, int m, void *(*body)(void *))
{
    pthread_t th[256];
    per_thread = m;
    for (int i = 0; i < n; i++)
        pthread_create(&th[i], NULL, body, NULL);
    for (int i = 0; i < n; i++)
        pthread_join(th[i], NULL);
}

static int threads(int n, int m)
{
    run_threads(n, m, hammer);
    printf("done %d\n", n * m);
    return 0;
}

static int forkexec(const char *self_exe)
{
    size_t f, t;
    CUdeviceptr p;
    cuMemGetInfo_v2(&f, &t);
    fflush(stdout);
    pid_t a = fork();
    if (a == 0) {
        cuMemAlloc_v2(&p, 1 << 20);
        execl(self_exe, self_exe, "direct", (char *)NULL);
        _exit(127);
    }
    pid_t b = fork();
    if (b == 0) {
        cuMemGetInfo_v2(&f, &t);
        cuMemGetInfo_v2(&f, &t);
        _exit(0);
    }
    int status;
    waitpid(a, &status, 0);
    waitpid(b, &status, 0);
    printf("children %d %d\n", (int)a, (int)b);
    return 0;
}

static int loop(void)
{
    CUdeviceptr p;
    for (long i = 1;; i++) {
        cuMemAlloc_v2(&p, 1 << 20);
        cuMemFree_v2(p);
        if (i % 1000 == 0) {
            printf("%ld\n", i);
            fflush(stdout);
        }
    }
    return 0;
}

static unsigned long long mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

static pthread_mutex_t print_lock = PTHREAD_MUTEX_INITIALIZER;
static void *clocked_thread(void *arg)
{
    (void)arg;
    int m = per_thread, tid = (int)syscall(SYS_gettid);
    unsigned long long *at = malloc(sizeof *at * 4 * m);
    size_t f, t;
    CUdeviceptr p;
    for (int i = 0; i < m; i++) {
        if (i % 1000 == 999)
            usleep(1500);
        at[4 * i] = mono_ns();
        cuMemGetInfo_v2(&f, &t);
        at[4 * i + 1] = mono_ns();
        cuMemAlloc_v2(&p, 1 << 20);
        at[4 * i + 2] = mono_ns();
        cuMemFree_v2(p);
        at[4 * i + 3] = mono_ns();
    }
    pthread_mutex_lock(&print_lock);
    for (int i = 0; i < m; i++) {
        printf("%d cuMemGetInfo %llu %llu\n", tid, at[4 * i], at[4 * i + 1]);
        printf("%d cuMemAlloc %llu %llu\n", tid, at[4 * i + 1], at[4 * i + 2]);
    }
    pthread_mutex_unlock(&print_lock);
    free(at);
    return NULL;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    const char *mode = argc > 1 ? argv[1] : "direct";
    if (!strcmp(mode, "direct"))
        return direct();
    if (!strcmp(mode, "procaddr"))
        return procaddr();
    if (!strcmp(mode, "threads") && argc > 3)
        return threads(atoi(argv[2]), atoi(argv[3]));
    if (!strcmp(mode, "clocked") && argc > 3) {
        run_threads(atoi(argv[2]), atoi(argv[3]), clocked_thread);
        return 0;
    }
    if (!strcmp(mode, "forkexec"))
        return forkexec("/proc/self/exe");
    if (!strcmp(mode, "loop"))
        return loop();
    if (!strcmp(mode, "freeram")) {
        struct sysinfo si;
        if (sysinfo(&si) != 0)
            return 1;
        printf("freeram %llu\n", (unsigned long long)si.freeram * (si.mem_unit ? si.mem_unit : 1));
        return 0;
    }
    if (!strcmp(mode, "dlsym_next"))
        printf("next==default %d\n", dlsym(RTLD_NEXT, "sysinfo") == dlsym(RTLD_DEFAULT, "sysinfo"));
    return 0;
}
