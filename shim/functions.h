/* The shim's functions: each one declared here once, and nowhere else.
 *
 * uvmshim.c generates from this table its hook bodies, the trampolines for every ABI variant,
 * the exported wrappers, the dlsym and cuGetProcAddress name lists; the Python side
 * (recording/cuda_functions.py: names, kinds, which record words count) is generated from it by
 * `python -m uvmtrace.shim.functions`, and tests/test_shim_functions.py compiles this header and
 * checks that the two agree.
 *
 * X(id, name, lib, kind, memory, bytes, flags, aux, record, variants)
 *   id       the record's `func` (uvmshim.h); 0: never recorded (cuGetProcAddress only hands out
 *            hooks). Never reuse an id: recordings keep it.
 *   name     the record's event name (no _v2 suffix)
 *   lib      cuda (libcuda.so.1), nvml (libnvidia-ml.so.1) or libc
 *   kind     query: its free/total answer is what counts (one clock read, no duration), and
 *              --reclaim-before-sizing may reclaim page cache before it answers;
 *            alloc, free, register, unregister, map, unmap, context: timed (the kernel charges
 *              a call causes are matched to its [ts, ts + dur] window);
 *            lookup: not recorded; `record` is what it does after the real call.
 *   memory   the kind of memory it takes or gives back (device, vmm, pool, pinned_host, managed,
 *            registered_host), or none
 *   bytes    1: the record's `bytes` is the size asked and is shown; 0: not shown
 *   flags    1: the record's `flags` is shown
 *   aux      what the record's `aux` word holds: none, stream, pool, handle, device, nvml_device,
 *            location (cuMemCreate's CUmemLocation: type << 32 | id)
 *   record   what the record keeps, set once the real call returned `res`: one expression over
 *            the arguments a, b, c, ... (the same names in every ABI variant, so the variants
 *            share it), `r` (the record being filled) and `saved_errno` (errno after the call).
 *            OUT(p): *p when the call succeeded and p is set, else 0; PTR(p): a pointer as a
 *            number (both in uvmshim.c).
 *   variants (abi, params, args, since, until, exports), one per ABI:
 *            abi      the record's `variant` (1 = the original ABI, 2 = _v2, ...)
 *            params   its C parameters, named a, b, c, ... in order (an argument that only
 *                     some variants have gets a name of its own, so `record` reads the same
 *                     argument under the same name in every variant); args: those names
 *            since, until   the cuGetProcAddress CUDA versions that answer with this ABI under the
 *                     plain name: since <= version < until (until 0: no end). A version no
 *                     variant covers is handed out unwrapped and counted (cuCtxCreate_v3/_v4
 *                     take other arguments). cuda functions only.
 *            exports  the symbol names this library exports with this ABI (direct calls and
 *                     dlsym; cuGetProcAddress("cuMemAlloc_v2") style names too)
 */
#ifndef UVMSHIM_FUNCTIONS_H
#define UVMSHIM_FUNCTIONS_H

#define UVMSHIM_FUNCTIONS(X)                                                                    \
    X(1, cuMemGetInfo, cuda, query, none, 0, 0, none, (r.free = OUT(a), r.total = OUT(b)),      \
      ((1, (unsigned int *a, unsigned int *b), (a, b), 0, 3020, (cuMemGetInfo)),                \
       (2, (size_t * a, size_t * b), (a, b), 3020, 0, (cuMemGetInfo_v2))))                      \
    X(2, cuMemAlloc, cuda, alloc, device, 1, 0, none, (r.bytes = b, r.addr = OUT(a)),           \
      ((1, (CUdeviceptr_v1 * a, unsigned int b), (a, b), 0, 3020, (cuMemAlloc)),                \
       (2, (CUdeviceptr * a, size_t b), (a, b), 3020, 0, (cuMemAlloc_v2))))                     \
    X(3, cuMemAllocPitch, cuda, alloc, device, 1, 0, none,                                      \
      (r.bytes = res == 0 && b ? (uint64_t)*b * d : (uint64_t)c * d, r.addr = OUT(a),           \
       r.aux = e),                                                                              \
      ((1, (CUdeviceptr_v1 * a, unsigned int *b, unsigned int c, unsigned int d, unsigned int e), \
        (a, b, c, d, e), 0, 3020, (cuMemAllocPitch)),                                           \
       (2, (CUdeviceptr * a, size_t * b, size_t c, size_t d, unsigned int e), (a, b, c, d, e),  \
        3020, 0, (cuMemAllocPitch_v2))))                                                        \
    X(4, cuMemAllocManaged, cuda, alloc, managed, 1, 1, none,                                   \
      (r.bytes = b, r.flags = c, r.addr = OUT(a)),                                              \
      ((1, (CUdeviceptr * a, size_t b, unsigned int c), (a, b, c), 0, 0, (cuMemAllocManaged)))) \
    X(5, cuMemAllocHost, cuda, alloc, pinned_host, 1, 0, none, (r.bytes = b, r.addr = OUT(a)),  \
      ((1, (void **a, unsigned int b), (a, b), 0, 3020, (cuMemAllocHost)),                      \
       (2, (void **a, size_t b), (a, b), 3020, 0, (cuMemAllocHost_v2))))                        \
    X(6, cuMemHostAlloc, cuda, alloc, pinned_host, 1, 1, none,                                  \
      (r.bytes = b, r.flags = c, r.addr = OUT(a)),                                              \
      ((1, (void **a, size_t b, unsigned int c), (a, b, c), 0, 0, (cuMemHostAlloc))))           \
    /* _v2 has the same signature; only the flags' meaning grew */                              \
    X(7, cuMemHostRegister, cuda, register, registered_host, 1, 1, none,                        \
      (r.bytes = b, r.flags = c, r.addr = PTR(a)),                                              \
      ((2, (void *a, size_t b, unsigned int c), (a, b, c), 0, 0,                                \
        (cuMemHostRegister, cuMemHostRegister_v2))))                                            \
    X(8, cuMemHostUnregister, cuda, unregister, registered_host, 0, 0, none, (r.addr = PTR(a)), \
      ((1, (void *a), (a), 0, 0, (cuMemHostUnregister))))                                       \
    X(9, cuMemFree, cuda, free, device, 0, 0, none, (r.addr = a),                               \
      ((1, (CUdeviceptr_v1 a), (a), 0, 3020, (cuMemFree)),                                      \
       (2, (CUdeviceptr a), (a), 3020, 0, (cuMemFree_v2))))                                     \
    X(10, cuMemFreeHost, cuda, free, pinned_host, 0, 0, none, (r.addr = PTR(a)),                \
      ((1, (void *a), (a), 0, 0, (cuMemFreeHost))))                                             \
    X(11, cuMemAllocAsync, cuda, alloc, pool, 1, 0, stream,                                     \
      (r.bytes = b, r.aux = PTR(c), r.addr = OUT(a)),                                           \
      ((1, (CUdeviceptr * a, size_t b, CUstream c), (a, b, c), 0, 0,                            \
        (cuMemAllocAsync, cuMemAllocAsync_ptsz))))                                              \
    X(12, cuMemAllocFromPoolAsync, cuda, alloc, pool, 1, 0, pool,                               \
      (r.bytes = b, r.aux = PTR(c), r.addr = OUT(a)),                                           \
      ((1, (CUdeviceptr * a, size_t b, CUmemoryPool c, CUstream d), (a, b, c, d), 0, 0,         \
        (cuMemAllocFromPoolAsync, cuMemAllocFromPoolAsync_ptsz))))                              \
    X(13, cuMemFreeAsync, cuda, free, pool, 0, 0, stream, (r.addr = a, r.aux = PTR(b)),         \
      ((1, (CUdeviceptr a, CUstream b), (a, b), 0, 0, (cuMemFreeAsync, cuMemFreeAsync_ptsz))))  \
    X(14, cuMemCreate, cuda, alloc, vmm, 1, 1, location,                                        \
      (r.bytes = b, r.flags = d, r.addr = OUT(a), r.aux = vmm_location(c)),                     \
      ((1, (CUmemGenericAllocationHandle * a, size_t b, const void *c, unsigned long long d),   \
        (a, b, c, d), 0, 0, (cuMemCreate))))                                                    \
    X(15, cuMemRelease, cuda, free, vmm, 0, 0, none, (r.addr = a),                              \
      ((1, (CUmemGenericAllocationHandle a), (a), 0, 0, (cuMemRelease))))                       \
    X(16, cuMemMap, cuda, map, none, 1, 1, handle,                                              \
      (r.addr = a, r.bytes = b, r.aux = d, r.flags = e),                                        \
      ((1,                                                                                      \
        (CUdeviceptr a, size_t b, size_t c, CUmemGenericAllocationHandle d,                     \
         unsigned long long e),                                                                 \
        (a, b, c, d, e), 0, 0, (cuMemMap))))                                                    \
    X(17, cuMemUnmap, cuda, unmap, none, 1, 0, none, (r.addr = a, r.bytes = b),                 \
      ((1, (CUdeviceptr a, size_t b), (a, b), 0, 0, (cuMemUnmap))))                             \
    /* _v3 (11040) adds execution-affinity parameters; _v4 (12050) takes a parameter struct: */ \
    /* handed out unwrapped, counted */                                                         \
    X(18, cuCtxCreate, cuda, context, none, 0, 1, device,                                       \
      (r.flags = b, r.aux = (uint64_t)(unsigned)c, r.addr = OUT(a)),                            \
      ((2, (CUcontext * a, unsigned int b, CUdevice c), (a, b, c), 0, 11040,                    \
        (cuCtxCreate, cuCtxCreate_v2)),                                                         \
       (3, (CUcontext * a, void *affinity, int n, unsigned int b, CUdevice c),                  \
        (a, affinity, n, b, c), 11040, 12050, (cuCtxCreate_v3))))                               \
    X(19, cuDevicePrimaryCtxRetain, cuda, context, none, 0, 0, device,                          \
      (r.aux = (uint64_t)(unsigned)b, r.addr = OUT(a)),                                         \
      ((1, (CUcontext * a, CUdevice b), (a, b), 0, 0, (cuDevicePrimaryCtxRetain))))             \
    /* only _v2 reports the driver-reserved memory (kept in `bytes`, not shown) */              \
    X(20, nvmlDeviceGetMemoryInfo, nvml, query, none, 0, 0, nvml_device,                        \
      (r.aux = PTR(a), r.free = res == 0 && b ? b->free : 0, r.total = res == 0 && b ? b->total : 0, \
       r.bytes = res == 0 && b ? nvml_reserved(b) : 0),                                         \
      ((1, (nvmlDevice_t a, nvmlMemory_t * b), (a, b), 0, 0, (nvmlDeviceGetMemoryInfo)),        \
       (2, (nvmlDevice_t a, nvmlMemory_v2_t * b), (a, b), 0, 0, (nvmlDeviceGetMemoryInfo_v2)))) \
    X(21, sysinfo, libc, query, none, 0, 0, none,                                               \
      (r.err = res ? (uint32_t)saved_errno : 0,                                                 \
       r.free = res == 0 && a ? (uint64_t)a->freeram * sysinfo_unit(a) : 0,                     \
       r.total = res == 0 && a ? (uint64_t)a->totalram * sysinfo_unit(a) : 0),                  \
      ((1, (struct sysinfo * a), (a), 0, 0, (sysinfo))))                                        \
    /* cudart >= 11.3 looks up every driver function through it: what it hands out is wrapped */ \
    X(0, cuGetProcAddress, cuda, lookup, none, 0, 0, none, (after_lookup(res, a, b, c)),        \
      ((1, (const char *a, void **b, int c, cuuint64_t d), (a, b, c, d), 0, 12000,              \
        (cuGetProcAddress)),                                                                    \
       (2, (const char *a, void **b, int c, cuuint64_t d, void *e), (a, b, c, d, e), 12000, 0,  \
        (cuGetProcAddress_v2))))

#endif
