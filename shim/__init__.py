"""LD_PRELOAD shim: CUDA driver / NVML / libc memory calls -> fixed-size records -> Arrow.

`build.build_shim()` compiles the C library, `session.shim_env()` preloads it into a command,
`decode.ShimDecoder` turns the per-process files into batches of the recording's `cuda` stream.
"""
