// rss.cu: root sum of squares of magnitudes along one axis (the coil axis), and its backward.
//
// Layout: x is a contiguous complex array viewed as (outer, NC, inner) with the reduced axis in the
// middle (fewer than 2^31 elements); out and g are real (outer, inner). With NC = 1 this is the magnitude |x|.
// rss_<t>(x, out, outer, NC, inner):            out[o,i] = sqrt(sum_c |x[o,c,i]|^2)
// rss_backward_<t>(g, x, out, gx, outer, NC, inner): gx[o,c,i] = g[o,i] * x[o,c,i] / out[o,i]
//     (0 where out == 0, the subgradient; torch's sqrt gives NaN there).
#include "complex_ops.cuh"

template <typename C, typename R>
__device__ void rss_impl(const C* x, R* out, int outer, int NC, int inner) {
    CHECK_BLOCK();
    unsigned n = (unsigned)outer * (unsigned)inner;
    GRID_STRIDE_LOOP(j, n) {
        unsigned o = j / (unsigned)inner;
        unsigned i = j % (unsigned)inner;
        R acc = 0;
        for (int c = 0; c < NC; ++c) {
            C v = x[((size_t)o * NC + c) * inner + i];
            acc += v.x * v.x + v.y * v.y;
        }
        out[j] = sqrt(acc);
    }
}

template <typename C, typename R>
__device__ void rss_backward_impl(const R* g, const C* x, const R* out, C* gx, int outer, int NC, int inner) {
    CHECK_BLOCK();
    unsigned n = (unsigned)outer * (unsigned)NC * (unsigned)inner;
    GRID_STRIDE_LOOP(j, n) {
        unsigned i = j % (unsigned)inner;
        unsigned o = j / ((unsigned)inner * (unsigned)NC);
        size_t oi = (size_t)o * inner + i;
        R r = out[oi];
        R s = r > (R)0 ? g[oi] / r : (R)0;
        gx[j] = c_scale(x[j], s);
    }
}

#define DEFINE_RSS(SUFFIX, C, R)                                                                                \
    extern "C" __global__ void rss_##SUFFIX(const C* x, R* out, int outer, int NC, int inner) {                 \
        rss_impl<C, R>(x, out, outer, NC, inner);                                                               \
    }                                                                                                           \
    extern "C" __global__ void rss_backward_##SUFFIX(const R* g, const C* x, const R* out, C* gx,               \
                                                     int outer, int NC, int inner) {                            \
        rss_backward_impl<C, R>(g, x, out, gx, outer, NC, inner);                                               \
    }

DEFINE_RSS(c64, float2, float)
DEFINE_RSS(c128, double2, double)
