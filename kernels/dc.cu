// dc.cu: fused data consistency on (B, C, H, W) k-space with a broadcast sampling mask.
//
// Layout: k, k0, g and all outputs are contiguous (B, C, H, W) with B*C*H*W < 2^31; the mask is
// one byte per element (torch bool or uint8, 0/1) indexed with four element strides (msb, msc,
// msh, msw), 0 along broadcast axes (e.g. a (B,1,1,W) column mask is broadcast along coils and
// rows), so any strided or broadcast mask is read in place. eta is the real weight: with
// eta_ptr != 0 it is read from the device (the learned weight, no host sync), else eta_value.
//
// soft_dc_<t>(k, k0, mask, ms.., eta, eta_ptr, eta_value, out, B, C, H, W):  out = k - eta * m * (k - k0)
// soft_dc_backward_<t>(g, k, k0, mask, ms.., eta, eta_ptr, eta_value, gk, gk0, geta, B, C, H, W, flags):
//     flags & 1: gk = g - eta * m * g;  flags & 2: gk0 = eta * m * g;
//     flags & 4: *geta += -sum m * Re(conj(g) * (k - k0))   (geta: one double, zeroed by the caller;
//                block partial sums in shared memory (RECON_THREADS of them), a tree reduction,
//                one atomicAdd per block; needs sm_60+)
// hard_dc_<t>(k, k0, mask, ms.., out, ...):            out = m ? k0 : k
// mask_select_<t>(g, mask, ms.., keep, drop, ...):     keep = m ? g : 0, drop = m ? 0 : g (either may
//     be skipped with flags 1 = keep, 2 = drop); with flags 1 it is the masking of the SENSE normal
//     operator, with flags 3 the backward of hard_dc.
// mask_scale_<t>(g, mask, ms.., out, B, C, H, W, fre, fim): out = m ? g * (fre + i fim) : 0 (in place
//     allowed); the fused middle of the SENSE normal operator (see cupy_backend._normal_impl).
#include "complex_ops.cuh"

// The mask byte of flat element i of (B, NC, H, W): three 32-bit divisions.
__device__ __forceinline__ bool mask_at(const unsigned char* mask, unsigned i, int NC, int H, int W, long long msb,
                                        long long msc, long long msh, long long msw) {
    unsigned w = i % (unsigned)W;
    unsigned r = i / (unsigned)W;
    unsigned h = r % (unsigned)H;
    r /= (unsigned)H;
    unsigned c = r % (unsigned)NC;
    unsigned b = r / (unsigned)NC;
    return mask[b * msb + c * msc + h * msh + w * msw] != 0;
}
#define MASK_AT(i) mask_at(mask, (i), NC, H, W, msb, msc, msh, msw)

template <typename C, typename R>
__device__ void soft_dc_impl(const C* k, const C* k0, const unsigned char* mask, long long msb, long long msc,
                             long long msh, long long msw, const R* eta, int eta_ptr, R eta_value, C* out, int B,
                             int NC, int H, int W) {
    CHECK_BLOCK();
    unsigned n = (unsigned)B * NC * H * W;
    R e = eta_ptr ? eta[0] : eta_value;
    GRID_STRIDE_LOOP(i, n) {
        C kv = k[i];
        out[i] = MASK_AT(i) ? c_sub(kv, c_scale(c_sub(kv, k0[i]), e)) : kv;
    }
}

template <typename C, typename R>
__device__ void soft_dc_backward_impl(const C* g, const C* k, const C* k0, const unsigned char* mask, long long msb,
                                      long long msc, long long msh, long long msw, const R* eta, int eta_ptr,
                                      R eta_value, C* gk, C* gk0, double* geta, int B, int NC, int H, int W,
                                      int flags) {
    __shared__ double partial[RECON_THREADS];
    CHECK_BLOCK();
    unsigned n = (unsigned)B * NC * H * W;
    R e = eta_ptr ? eta[0] : eta_value;
    double local = 0.0;
    GRID_STRIDE_LOOP(i, n) {
        C gv = g[i];
        bool m = MASK_AT(i);
        if (flags & 1) gk[i] = m ? c_sub(gv, c_scale(gv, e)) : gv;
        if (flags & 2) gk0[i] = m ? c_scale(gv, e) : c_make((R)0, (R)0);
        if ((flags & 4) && m) {
            C d = c_sub(k[i], k0[i]);
            local -= (double)gv.x * (double)d.x + (double)gv.y * (double)d.y;
        }
    }
    if (flags & 4) {
        partial[threadIdx.x] = local;
        __syncthreads();
        for (unsigned int s = RECON_THREADS / 2; s > 0; s >>= 1) {
            if (threadIdx.x < s) partial[threadIdx.x] += partial[threadIdx.x + s];
            __syncthreads();
        }
        if (threadIdx.x == 0) atomicAdd(geta, partial[0]);
    }
}

template <typename C, typename R>
__device__ void hard_dc_impl(const C* k, const C* k0, const unsigned char* mask, long long msb, long long msc,
                             long long msh, long long msw, C* out, int B, int NC, int H, int W) {
    CHECK_BLOCK();
    unsigned n = (unsigned)B * NC * H * W;
    GRID_STRIDE_LOOP(i, n) { out[i] = MASK_AT(i) ? k0[i] : k[i]; }
}

template <typename C, typename R>
__device__ void mask_select_impl(const C* g, const unsigned char* mask, long long msb, long long msc, long long msh,
                                 long long msw, C* keep, C* drop, int B, int NC, int H, int W, int flags) {
    CHECK_BLOCK();
    unsigned n = (unsigned)B * NC * H * W;
    C zero = c_make((R)0, (R)0);
    GRID_STRIDE_LOOP(i, n) {
        bool m = MASK_AT(i);
        C gv = g[i];
        if (flags & 1) keep[i] = m ? gv : zero;
        if (flags & 2) drop[i] = m ? zero : gv;
    }
}

template <typename C, typename R>
__device__ void mask_scale_impl(const C* g, const unsigned char* mask, long long msb, long long msc, long long msh,
                                long long msw, C* out, int B, int NC, int H, int W, R fre, R fim) {
    CHECK_BLOCK();
    unsigned n = (unsigned)B * NC * H * W;
    C f = c_make(fre, fim);
    C zero = c_make((R)0, (R)0);
    GRID_STRIDE_LOOP(i, n) { out[i] = MASK_AT(i) ? c_mul(g[i], f) : zero; }
}

#define MASK_ARGS const unsigned char *mask, long long msb, long long msc, long long msh, long long msw
#define DEFINE_DC(SUFFIX, C, R)                                                                                  \
    extern "C" __global__ void soft_dc_##SUFFIX(const C* k, const C* k0, MASK_ARGS, const R* eta, int eta_ptr,   \
                                                R eta_value, C* out, int B, int NC, int H, int W) {              \
        soft_dc_impl<C, R>(k, k0, mask, msb, msc, msh, msw, eta, eta_ptr, eta_value, out, B, NC, H, W);          \
    }                                                                                                            \
    extern "C" __global__ void soft_dc_backward_##SUFFIX(const C* g, const C* k, const C* k0, MASK_ARGS,         \
                                                         const R* eta, int eta_ptr, R eta_value, C* gk, C* gk0,  \
                                                         double* geta, int B, int NC, int H, int W, int flags) { \
        soft_dc_backward_impl<C, R>(g, k, k0, mask, msb, msc, msh, msw, eta, eta_ptr, eta_value, gk, gk0, geta,  \
                                    B, NC, H, W, flags);                                                         \
    }                                                                                                            \
    extern "C" __global__ void hard_dc_##SUFFIX(const C* k, const C* k0, MASK_ARGS, C* out, int B, int NC,       \
                                                int H, int W) {                                                  \
        hard_dc_impl<C, R>(k, k0, mask, msb, msc, msh, msw, out, B, NC, H, W);                                   \
    }                                                                                                            \
    extern "C" __global__ void mask_select_##SUFFIX(const C* g, MASK_ARGS, C* keep, C* drop, int B, int NC,      \
                                                    int H, int W, int flags) {                                   \
        mask_select_impl<C, R>(g, mask, msb, msc, msh, msw, keep, drop, B, NC, H, W, flags);                     \
    }                                                                                                            \
    extern "C" __global__ void mask_scale_##SUFFIX(const C* g, MASK_ARGS, C* out, int B, int NC, int H, int W,   \
                                                   R fre, R fim) {                                               \
        mask_scale_impl<C, R>(g, mask, msb, msc, msh, msw, out, B, NC, H, W, fre, fim);                          \
    }

DEFINE_DC(c64, float2, float)
DEFINE_DC(c128, double2, double)
