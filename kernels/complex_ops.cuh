// complex_ops.cuh: shared device helpers for the recon kernels.
//
// Contract: complex numbers are interleaved (re, im) pairs, float2 for complex64 and
// double2 for complex128, exactly the memory layout of torch/CuPy complex tensors.
// No other header is included, so the kernels compile both under NVRTC (CuPy RawModule)
// and standalone under nvcc. Every kernel loops grid-stride over a flat 32-bit index: the
// launcher guarantees fewer than 2^31 elements and H, W < 65536, so no index math needs 64-bit
// division or modulo (pointer offsets are still formed in 64 bits).
//
// RECON_THREADS is the block size of every launch (the launcher passes -DRECON_THREADS); shared
// reductions are sized by it, so it must be a power of two no larger than 1024.
#pragma once

#ifndef RECON_THREADS
#define RECON_THREADS 256
#endif
static_assert(RECON_THREADS >= 32 && RECON_THREADS <= 1024 && (RECON_THREADS & (RECON_THREADS - 1)) == 0,
              "RECON_THREADS must be a power of two between 32 and 1024");

__device__ __forceinline__ float2 c_make(float re, float im) { return make_float2(re, im); }
__device__ __forceinline__ double2 c_make(double re, double im) { return make_double2(re, im); }

template <typename C> __device__ __forceinline__ C c_mul(C a, C b) {
    return c_make(a.x * b.x - a.y * b.y, a.x * b.y + a.y * b.x);
}
// conj(a) * b
template <typename C> __device__ __forceinline__ C c_conj_mul(C a, C b) {
    return c_make(a.x * b.x + a.y * b.y, a.x * b.y - a.y * b.x);
}
template <typename C> __device__ __forceinline__ C c_add(C a, C b) { return c_make(a.x + b.x, a.y + b.y); }
template <typename C> __device__ __forceinline__ C c_sub(C a, C b) { return c_make(a.x - b.x, a.y - b.y); }
template <typename C, typename R> __device__ __forceinline__ C c_scale(C a, R s) { return c_make(a.x * s, a.y * s); }

__device__ __forceinline__ void sincospi_r(float x, float* s, float* c) { sincospif(x, s, c); }
__device__ __forceinline__ void sincospi_r(double x, double* s, double* c) { sincospi(x, s, c); }

// Modulation factor exp(sign * i*pi * 2*((h-offh)*(H/2) mod H / H + (w-offw)*(W/2) mod W / W)).
// The integer reduction comes first, so for even H and W the phase is an exact multiple of pi
// and the factor is exactly +-1 (the checkerboard). offh = offw = 0 gives the factor before
// the FFT, offh = H/2, offw = W/2 the factor after it; sign = +1 forward, -1 inverse.
// 32-bit: (h + H - offh) % H < H < 65536, times H/2 stays below 2^31.
template <typename C, typename R>
__device__ __forceinline__ C mod_factor(unsigned h, unsigned w, unsigned H, unsigned W, unsigned offh, unsigned offw,
                                        int sign) {
    unsigned th = ((h + H - offh) % H) * (H / 2) % H;
    unsigned tw = ((w + W - offw) % W) * (W / 2) % W;
    R phase = (R)(2.0 * ((double)th / (double)H + (double)tw / (double)W));
    R s, c;
    sincospi_r(phase, &s, &c);
    return c_make(c, sign * s);
}

// n < 2^31 (checked by the launcher), so i + stride cannot wrap.
#define GRID_STRIDE_LOOP(i, n) \
    for (unsigned i = blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += blockDim.x * gridDim.x)

// Every kernel is launched with RECON_THREADS threads per block; another block size is a bug.
#define CHECK_BLOCK() \
    do {                                          \
        if (blockDim.x != RECON_THREADS) __trap(); \
    } while (0)
