// shim.h: just enough of the CUDA device dialect to compile kernel sources as host C++.
//
// The kernel text is compiled unchanged after this header. Each thread of a block runs as a
// ucontext fiber on one OS thread, so `__syncthreads` is a real barrier: a fiber that reaches it
// yields to the scheduler, which resumes the other threads of the block (in the order the launch
// asks for) and releases the barrier only when every thread has arrived. `__shared__` variables
// are function statics, i.e. one copy per block because blocks run one after another; they are
// NaN/0xFF-poisoned before each block. Faults (guard pages) and UBSan traps are turned into error
// codes by a signal handler that jumps back to the launcher.
#pragma once
#include <math.h>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <cstdlib>
#include <csetjmp>
#include <csignal>
#include <ucontext.h>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __restrict__ __restrict
#define __shared__ static __attribute__((section("hk_shared")))

struct alignas(8) float2 { float x, y; };
struct alignas(16) double2 { double x, y; };
struct uint3 { unsigned int x, y, z; };
struct dim3 { unsigned int x, y, z; };
static inline float2 make_float2(float x, float y) { return float2{x, y}; }
static inline double2 make_double2(double x, double y) { return double2{x, y}; }

static uint3 threadIdx, blockIdx;
static dim3 blockDim, gridDim;

using std::sqrt;
using std::fabs;

// sin(pi x), cos(pi x) exact at multiples of 1/2, as CUDA's sincospi is.
template <typename R> static inline void hk_sincospi(R x, R* s, R* c) {
    R r = std::fmod(x, (R)2);  // exact
    if (r < 0) r += 2;
    R q = r * 2;  // quarter turns, exact
    if (q == std::floor(q)) {
        static const R sv[4] = {0, 1, 0, -1}, cv[4] = {1, 0, -1, 0};
        int k = (int)q & 3;
        *s = sv[k];
        *c = cv[k];
        return;
    }
    long double a = (long double)r * 3.141592653589793238462643383279502884L;
    *s = (R)std::sin(a);
    *c = (R)std::cos(a);
}
static inline void sincospif(float x, float* s, float* c) { hk_sincospi<float>(x, s, c); }
static inline void sincospi(double x, double* s, double* c) { hk_sincospi<double>(x, s, c); }

// One OS thread runs all fibers, so the atomics are plain read-modify-writes.
static inline double atomicAdd(double* a, double v) { double o = *a; *a = o + v; return o; }
static inline float atomicAdd(float* a, float v) { float o = *a; *a = o + v; return o; }
static inline int atomicAdd(int* a, int v) { int o = *a; *a = o + v; return o; }
static inline void __trap() { __builtin_trap(); }

void __syncthreads();
