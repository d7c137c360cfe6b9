/* Test-only stand-in for libnvidia-ml.so.1: one device with fixed memory figures. */
typedef int nvmlReturn_t;
typedef struct {
    unsigned long long total, free, used;
} nvmlMemory_t;
typedef struct {
    unsigned int version;
    unsigned long long total, reserved, free, used;
} nvmlMemory_v2_t;

#define NVML_MEMORY_V2 (unsigned int)(sizeof(nvmlMemory_v2_t) | (2 << 24))
enum { SUCCESS = 0, INVALID_ARGUMENT = 2, ARGUMENT_VERSION_MISMATCH = 25 };
static int device;

nvmlReturn_t nvmlInit_v2(void) { return SUCCESS; }
nvmlReturn_t nvmlDeviceGetHandleByIndex_v2(unsigned int i, void **dev)
{
    if (i != 0 || !dev)
        return INVALID_ARGUMENT;
    *dev = &device;
    return SUCCESS;
}
nvmlReturn_t nvmlDeviceGetMemoryInfo(void *dev, nvmlMemory_t *m)
{
    if (dev != &device || !m)
        return INVALID_ARGUMENT;
    m->total = 16ULL << 30;
    m->free = 12ULL << 30;
    m->used = 4ULL << 30;
    return SUCCESS;
}
nvmlReturn_t nvmlDeviceGetMemoryInfo_v2(void *dev, nvmlMemory_v2_t *m)
{
    if (dev != &device || !m)
        return INVALID_ARGUMENT;
    if (m->version != NVML_MEMORY_V2)
        return ARGUMENT_VERSION_MISMATCH;
    m->total = 16ULL << 30;
    m->reserved = 512ULL << 20;
    m->free = 11ULL << 30;
    m->used = (4ULL << 30) + (512ULL << 20);
    return SUCCESS;
}
