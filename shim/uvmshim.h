/* Layout of a uvmshim per-process file: one header page, then fixed-size records.
 *
 * Shared by the C library (uvmshim.c) and checked against the Python decoder's numpy dtypes
 * (shim/file_layout.py) by a test that compiles this header, so the two cannot drift.
 *
 * File: <run dir>/<ns pid>-<CLOCK_MONOTONIC ns at open>.uvm
 *   [0, UVMSHIM_HEADER_SIZE)        struct uvmshim_header (rest zero)
 *   [UVMSHIM_HEADER_SIZE, ...)      struct uvmshim_record[], slot n at HEADER + n * RECORD_SIZE
 * Sidecar <file>.syms: one text line per distinct call site, written once when first seen:
 *   "<return address hex>\t<module path>\t<module base hex>\t<symbol or empty>\t<symbol addr hex>\n"
 */
#ifndef UVMSHIM_H
#define UVMSHIM_H

#include <stdint.h>

#define UVMSHIM_MAGIC 0x314d4853564d5655ULL /* "UVMSHM1" little-endian, written last */
#define UVMSHIM_VERSION 2 /* 2: 64-byte records */
#define UVMSHIM_ANNOUNCE "announce.sock" /* in the run dir: the recorder's pid-mapping socket */
#define UVMSHIM_RECLAIM "reclaim.sock"   /* in the run dir: --reclaim-before-sizing requests */
/* 64 KiB so record chunks stay page-aligned on 64 KiB-page aarch64 kernels (Grace). */
#define UVMSHIM_HEADER_SIZE 65536
/* One cache line: a third less to write and to provision per record than the 96 bytes of
 * version 1 (docs/performance.md). */
#define UVMSHIM_RECORD_SIZE 64
/* Records per file growth step: 768 KiB, a multiple of 64 KiB. */
#define UVMSHIM_CHUNK_RECORDS 12288
#define UVMSHIM_MAX_CHUNKS 4096
/* `dur`: nanoseconds below this, else UVMSHIM_DUR_US | microseconds (up to ~35 minutes). */
#define UVMSHIM_DUR_US 0x80000000u

struct uvmshim_header {
    uint64_t magic;
    uint32_t version;
    uint32_t header_size;
    uint32_t record_size;
    uint32_t chunk_records;
    int32_t pid;          /* getpid(): the pid inside the process's pid namespace */
    int32_t ppid;
    uint64_t pid_ns;      /* inode of /proc/self/ns/pid */
    uint64_t start_ns;    /* CLOCK_MONOTONIC when the file was opened */
    uint64_t next_slot;   /* slots claimed so far (atomic fetch-add) */
    uint64_t dropped;     /* calls not recorded: the file could not grow */
    uint64_t passthrough; /* function pointers handed out unwrapped (no slot, unknown version) */
    uint64_t lookups;     /* cuGetProcAddress / dlsym look-ups of hooked names */
    char comm[16];
    char exe[1024];
};

struct uvmshim_record {
    uint64_t ts_ns;  /* CLOCK_MONOTONIC at entry */
    uint64_t caller; /* return address of the hooked call */
    uint64_t bytes;  /* size asked (pitch * height for cuMemAllocPitch); NVML v2: reserved */
    uint64_t addr;   /* pointer returned or freed; handle for cuMemCreate/cuMemRelease;
                        memory queries: free */
    uint64_t aux;    /* stream, pool, VMM handle (cuMemMap), device ordinal, NVML device */
    uint64_t flags;  /* memory queries: total */
    uint32_t dur;    /* see UVMSHIM_DUR_US; 0 for memory queries: one clock read, their answer
                        is what counts */
    int32_t tid;     /* thread id inside the pid namespace */
    int32_t result;  /* CUresult / nvmlReturn_t / sysinfo() return */
    uint32_t call;   /* func | variant << 16 | errno << 24, stored last: nonzero (function ids
                        start at 1) once the record is whole. func: UVMSHIM_FUNCTIONS in
                        functions.h; variant: ABI, 1 = v1, 2 = v2, ...; errno after sysinfo() */
};

static inline uint32_t uvmshim_dur(uint64_t ns)
{
    if (ns < UVMSHIM_DUR_US)
        return (uint32_t)ns;
    return ns / 1000 < UVMSHIM_DUR_US ? UVMSHIM_DUR_US | (uint32_t)(ns / 1000) : UINT32_MAX;
}

#endif
