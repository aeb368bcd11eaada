// complex_ops.cuh: shared device helpers for the recon kernels.
//
// Contract: complex numbers are interleaved (re, im) pairs, float2 for complex64 and
// double2 for complex128, exactly the memory layout of torch/CuPy complex tensors.
// No other header is included, so the kernels compile both under NVRTC (CuPy RawModule)
// and standalone under nvcc. Every kernel loops grid-stride over a flat 64-bit index.
#pragma once

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
template <typename C, typename R>
__device__ __forceinline__ C mod_factor(long long h, long long w, int H, int W, int offh, int offw, int sign) {
    long long th = ((h - offh) * (long long)(H / 2)) % H;
    long long tw = ((w - offw) * (long long)(W / 2)) % W;
    if (th < 0) th += H;
    if (tw < 0) tw += W;
    R phase = (R)(2.0 * ((double)th / (double)H + (double)tw / (double)W));
    R s, c;
    sincospi_r(phase, &s, &c);
    return c_make(c, sign * s);
}

#define GRID_STRIDE_LOOP(i, n) \
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += (long long)blockDim.x * gridDim.x)
