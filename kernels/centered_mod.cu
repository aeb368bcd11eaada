// centered_mod.cu: the centering of the orthonormal 2-D FFT as elementwise passes.
//
// Contract: fft2c(x) = post .* FFT2(pre .* x) / sqrt(H*W) over the last two axes of a C-contiguous
// (L, H, W) complex array (L = all leading axes), with the factors of complex_ops.cuh mod_factor:
// pre = factor(off = 0), post = factor(off = H/2, W/2); the inverse uses sign = -1 and an
// unnormalized inverse FFT. This equals fftshift(fft2(ifftshift(x), norm="ortho")) for every
// size, odd or even (model: recon/ops/modulation.py). cuFFT runs between the two passes.
//
// modulate_<t>(in, out, n, H, W, offh, offw, sign, scale): out[i] = in[i] * factor(h, w) * scale,
// n = L*H*W < 2^31 elements; in == out is allowed (in place).
#include "complex_ops.cuh"

template <typename C, typename R>
__device__ void modulate_impl(const C* in, C* out, int n, int H, int W, int offh, int offw, int sign, R scale) {
    CHECK_BLOCK();
    GRID_STRIDE_LOOP(i, (unsigned)n) {
        unsigned w = i % (unsigned)W;
        unsigned h = (i / (unsigned)W) % (unsigned)H;
        C f = mod_factor<C, R>(h, w, H, W, offh, offw, sign);
        out[i] = c_scale(c_mul(in[i], f), scale);
    }
}

#define DEFINE_MODULATE(SUFFIX, C, R)                                                              \
    extern "C" __global__ void modulate_##SUFFIX(const C* in, C* out, int n, int H, int W,         \
                                                 int offh, int offw, int sign, R scale) {          \
        modulate_impl<C, R>(in, out, n, H, W, offh, offw, sign, scale);                            \
    }

DEFINE_MODULATE(c64, float2, float)
DEFINE_MODULATE(c128, double2, double)
