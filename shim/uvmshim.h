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
#define UVMSHIM_VERSION 1
#define UVMSHIM_ANNOUNCE "announce.sock" /* in the run dir: the recorder's pid-mapping socket */
#define UVMSHIM_RECLAIM "reclaim.sock"   /* in the run dir: --reclaim-before-sizing requests */
/* 64 KiB so record chunks stay page-aligned on 64 KiB-page aarch64 kernels (Grace). */
#define UVMSHIM_HEADER_SIZE 65536
#define UVMSHIM_RECORD_SIZE 96
/* Records per file growth step: 768 KiB, a multiple of 64 KiB. */
#define UVMSHIM_CHUNK_RECORDS 8192
#define UVMSHIM_MAX_CHUNKS 4096
/* A record is complete once `commit` holds this value (release store, written last). */
#define UVMSHIM_COMMITTED 0x314d5655u

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
    uint64_t dur_ns; /* 0 for memory queries: one clock read, their answer is what counts */
    uint64_t bytes;  /* size asked (pitch * height for cuMemAllocPitch) */
    uint64_t addr;   /* pointer returned or freed; handle for cuMemCreate/cuMemRelease */
    uint64_t aux;    /* stream, pool, VMM handle (cuMemMap), device ordinal, NVML device */
    uint64_t free;   /* memory queries */
    uint64_t total;
    uint64_t flags;
    uint64_t caller; /* return address of the hooked call */
    int32_t tid;     /* thread id inside the pid namespace */
    int32_t result;  /* CUresult / nvmlReturn_t / sysinfo() return */
    uint16_t func;   /* function id: UVMSHIM_FUNCTIONS in functions.h */
    uint16_t variant;/* ABI variant: 1 = v1, 2 = v2, ... */
    uint32_t err;    /* errno after sysinfo() */
    uint32_t reserved;
    uint32_t commit;
};

#endif
