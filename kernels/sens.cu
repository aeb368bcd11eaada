// sens.cu: fused coil-sensitivity expand and reduce around the FFT (centering folded in).
//
// Layout: images and coil data are (B, C, H, W) with contiguous (H, W) planes (row stride W);
// the batch and coil strides of broadcast inputs are passed in elements (0 = broadcast).
// B*C*H*W < 2^31 and H, W < 65536 (checked by the launcher): 32-bit index math.
//
// expand_premod_<t>(x, xsb, xsc, maps, msb, msc, out, B, C, H, W, sign):
//     out[b,c,h,w] = maps[b,c,h,w] * x[b,c,h,w] * factor(h, w; off 0, sign), out contiguous.
//     Followed by an unnormalized FFT and modulate(off H/2, W/2, scale 1/sqrt(HW)) this is
//     sens_expand = fft2c(maps * x).
//
// coil_reduce_postmod_<t>(img, maps, msb, msc, x, xsb, out_sum, out_maps, B, C, H, W, sign, scale, flags):
//     with f = factor(h, w; off H/2, W/2, sign) * scale and v_c = img[b,c,h,w] * f (img contiguous):
//     flags & 1: out_sum[b,h,w]      = sum_c conj(maps[b,c,h,w]) * v_c      (contiguous (B,1,H,W))
//     flags & 2: out_maps[b,c,h,w]   = conj(x[b,h,w]) * v_c                 (contiguous (B,C,H,W))
//     After a pre-modulation and unnormalized inverse FFT of k this gives sens_reduce (flag 1), the
//     gradient of sens_expand w.r.t. x (flag 1) and maps (flag 2, x = image), and the gradient of
//     sens_reduce w.r.t. maps (flag 2, x = grad_output). One thread per (b, h, w) loops over coils.
#include "complex_ops.cuh"

template <typename C, typename R>
__device__ void expand_premod_impl(const C* x, long long xsb, long long xsc, const C* maps, long long msb,
                                   long long msc, C* out, int B, int NC, int H, int W, int sign) {
    CHECK_BLOCK();
    unsigned plane = (unsigned)H * (unsigned)W;
    unsigned n = plane * (unsigned)NC * (unsigned)B;
    GRID_STRIDE_LOOP(i, n) {
        unsigned p = i % plane;
        unsigned bc = i / plane;
        unsigned c = bc % (unsigned)NC;
        unsigned b = bc / (unsigned)NC;
        C f = mod_factor<C, R>(p / W, p % W, H, W, 0, 0, sign);
        C v = c_mul(maps[b * msb + c * msc + p], x[b * xsb + c * xsc + p]);
        out[i] = c_mul(v, f);
    }
}

template <typename C, typename R>
__device__ void coil_reduce_postmod_impl(const C* img, const C* maps, long long msb, long long msc, const C* x,
                                         long long xsb, C* out_sum, C* out_maps, int B, int NC, int H, int W,
                                         int sign, R scale, int flags) {
    CHECK_BLOCK();
    unsigned plane = (unsigned)H * (unsigned)W;
    unsigned n = (unsigned)B * plane;
    GRID_STRIDE_LOOP(i, n) {
        unsigned p = i % plane;
        unsigned b = i / plane;
        C f = c_scale(mod_factor<C, R>(p / W, p % W, H, W, H / 2, W / 2, sign), scale);
        C acc = c_make((R)0, (R)0);
        C xv = (flags & 2) ? x[b * xsb + p] : acc;
        for (int c = 0; c < NC; ++c) {
            size_t j = ((size_t)b * NC + c) * plane + p;
            C v = c_mul(img[j], f);
            if (flags & 1) acc = c_add(acc, c_conj_mul(maps[b * msb + c * msc + p], v));
            if (flags & 2) out_maps[j] = c_conj_mul(xv, v);
        }
        if (flags & 1) out_sum[i] = acc;
    }
}

#define DEFINE_SENS(SUFFIX, C, R)                                                                           \
    extern "C" __global__ void expand_premod_##SUFFIX(const C* x, long long xsb, long long xsc, const C* maps,  \
                                                      long long msb, long long msc, C* out, int B, int NC,      \
                                                      int H, int W, int sign) {                                 \
        expand_premod_impl<C, R>(x, xsb, xsc, maps, msb, msc, out, B, NC, H, W, sign);                         \
    }                                                                                                           \
    extern "C" __global__ void coil_reduce_postmod_##SUFFIX(                                                    \
        const C* img, const C* maps, long long msb, long long msc, const C* x, long long xsb, C* out_sum,       \
        C* out_maps, int B, int NC, int H, int W, int sign, R scale, int flags) {                               \
        coil_reduce_postmod_impl<C, R>(img, maps, msb, msc, x, xsb, out_sum, out_maps, B, NC, H, W, sign,      \
                                       scale, flags);                                                           \
    }

DEFINE_SENS(c64, float2, float)
DEFINE_SENS(c128, double2, double)
