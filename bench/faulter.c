/* Fault-bound workloads for the benchmarks, in C so that the time measured is the kernel's.
 *   faulter anon BYTES          touch BYTES of fresh anonymous memory once
 *   faulter read PATH           read PATH (cold: its cache dropped first) with 1 MiB reads
 *   faulter churn SECONDS RATE  fault about RATE pages/s (reusing 64 MiB via MADV_DONTNEED)
 * Prints "elapsed_ns=N cpu_ns=C faults=F" on stdout: wall time, and the CPU time this process
 * spent (user + system, where in-kernel probes run), which other load on the machine does not
 * inflate. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

static long long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static long long cpu_ns(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000000LL +
           (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1000LL;
}

static int touch_anon(size_t bytes, long page) {
    char *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) { perror("mmap"); return 1; }
    madvise(p, bytes, MADV_NOHUGEPAGE);  /* 4 KiB faults: the worst case for per-fault probes */
    long long t0 = now_ns(), c0 = cpu_ns();
    for (size_t off = 0; off < bytes; off += page) p[off] = 1;
    long long t1 = now_ns(), c1 = cpu_ns();
    printf("elapsed_ns=%lld cpu_ns=%lld faults=%zu\n", t1 - t0, c1 - c0, bytes / page);
    return 0;
}

static int read_file(const char *path) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) { perror(path); return 1; }
    static char buf[1 << 20];
    posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED); /* cold, whatever ran before */
    long long t0 = now_ns(), c0 = cpu_ns(), total = 0;
    ssize_t n;
    while ((n = read(fd, buf, sizeof buf)) > 0) total += n;
    long long t1 = now_ns(), c1 = cpu_ns();
    printf("elapsed_ns=%lld cpu_ns=%lld bytes=%lld\n", t1 - t0, c1 - c0, total);
    close(fd);
    return 0;
}

static int churn(double seconds, double rate, long page) {
    size_t bytes = 64 << 20, pages = bytes / page, done = 0;
    char *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) { perror("mmap"); return 1; }
    madvise(p, bytes, MADV_NOHUGEPAGE);
    long long t0 = now_ns(), end = t0 + (long long)(seconds * 1e9);
    for (;;) {
        long long t = now_ns();
        if (t >= end) break;
        size_t due = (size_t)((t - t0) * rate / 1e9);
        if (done >= due) continue;  /* ahead of the rate: spin */
        size_t i = done % pages;
        p[i * page] = 1;
        if (i == pages - 1) madvise(p, bytes, MADV_DONTNEED);
        done++;
    }
    printf("elapsed_ns=%lld faults=%zu\n", now_ns() - t0, done);
    return 0;
}

int main(int argc, char **argv) {
    long page = sysconf(_SC_PAGESIZE);
    if (argc == 3 && !strcmp(argv[1], "anon")) return touch_anon(strtoull(argv[2], 0, 0), page);
    if (argc == 3 && !strcmp(argv[1], "read")) return read_file(argv[2]);
    if (argc == 4 && !strcmp(argv[1], "churn")) return churn(atof(argv[2]), atof(argv[3]), page);
    fprintf(stderr, "usage: faulter anon BYTES | read PATH | churn SECONDS RATE\n");
    return 2;
}
