// runner.h: the grid launcher appended after the kernel source (see shim.h).
//
// hk_run(thunk, args, cfg) runs every block of the grid and every thread of each block.
// cfg = {gx, gy, gz, bx, by, bz, order, seed}; order 0 = forward, 1 = reverse, 2 = shuffled
// (a new permutation per block and per barrier phase). Returns 0, or an HK_* error code with
// hk_fault_addr() telling where a fault happened.
#pragma once
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

enum { HK_OK = 0, HK_FAULT = 1, HK_DIVERGENT_BARRIER = 2, HK_TRAP = 3, HK_BAD_CONFIG = 4 };

namespace hk {
struct Fiber {
    ucontext_t ctx;
    int state;  // 0 runnable, 1 waiting at a barrier, 2 finished
};
static ucontext_t main_ctx;
static std::vector<Fiber> fibers;
static std::vector<char*> stacks;
static const size_t kStack = 256 * 1024;
static int cur = 0;
static unsigned long long barrier_count = 0;
static void (*body)(void**) = nullptr;
static void** body_args = nullptr;
static sigjmp_buf jump;
static volatile sig_atomic_t fault_sig = 0;
static void* volatile fault_addr = nullptr;
static char* altstack = nullptr;
static uint64_t rng_state = 1;

static uint64_t next_rand() {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static void on_signal(int sig, siginfo_t* info, void*) {
    fault_sig = sig;
    fault_addr = info->si_addr;
    siglongjmp(jump, 1);
}

static void entry() {
    body(body_args);
    fibers[cur].state = 2;
}

static void order_threads(std::vector<int>& ord, int order) {
    int n = (int)ord.size();
    for (int i = 0; i < n; ++i) ord[i] = order == 1 ? n - 1 - i : i;
    if (order == 2)
        for (int i = n - 1; i > 0; --i) std::swap(ord[i], ord[(int)(next_rand() % (uint64_t)(i + 1))]);
}
}  // namespace hk

extern "C" char __start_hk_shared[] __attribute__((weak));
extern "C" char __stop_hk_shared[] __attribute__((weak));

void __syncthreads() {
    hk::fibers[hk::cur].state = 1;
    ++hk::barrier_count;
    swapcontext(&hk::fibers[hk::cur].ctx, &hk::main_ctx);
}

#define HK_API extern "C" __attribute__((visibility("default")))
HK_API void* hk_fault_addr() { return hk::fault_addr; }
HK_API int hk_fault_signal() { return hk::fault_sig; }
HK_API unsigned long long hk_barrier_count() { return hk::barrier_count; }

static int hk_run(void (*thunk)(void**), void** args, const long long* cfg) {
    for (int i = 0; i < 6; ++i)
        if (cfg[i] < 1) return HK_BAD_CONFIG;
    const unsigned gx = cfg[0], gy = cfg[1], gz = cfg[2], bx = cfg[3], by = cfg[4], bz = cfg[5];
    const int order = (int)cfg[6];
    hk::rng_state = (uint64_t)cfg[7] * 2654435761ULL + 88172645463325252ULL;
    const int nthreads = (int)(bx * by * bz);
    if (nthreads > 1024) return HK_BAD_CONFIG;
    if ((int)hk::stacks.size() < nthreads) {
        while ((int)hk::stacks.size() < nthreads) hk::stacks.push_back((char*)std::malloc(hk::kStack));
    }
    hk::fibers.assign(nthreads, hk::Fiber{});
    hk::body = thunk;
    hk::body_args = args;
    hk::fault_sig = 0;
    hk::fault_addr = nullptr;
    gridDim = dim3{gx, gy, gz};
    blockDim = dim3{bx, by, bz};

    if (!hk::altstack) hk::altstack = (char*)std::malloc(1 << 16);
    stack_t ss{}, old_ss{};
    ss.ss_sp = hk::altstack;
    ss.ss_size = 1 << 16;
    sigaltstack(&ss, &old_ss);
    struct sigaction sa{}, old_segv{}, old_bus{}, old_ill{}, old_trap{};
    sa.sa_sigaction = hk::on_signal;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_NODEFER;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGSEGV, &sa, &old_segv);
    sigaction(SIGBUS, &sa, &old_bus);
    sigaction(SIGILL, &sa, &old_ill);
    sigaction(SIGTRAP, &sa, &old_trap);
    int rc = HK_OK;
    if (sigsetjmp(hk::jump, 1)) {
        rc = hk::fault_sig == SIGSEGV || hk::fault_sig == SIGBUS ? HK_FAULT : HK_TRAP;
    } else {
        const long long nblocks = (long long)gx * gy * gz;
        std::vector<long long> blocks(nblocks);
        for (long long i = 0; i < nblocks; ++i) blocks[i] = cfg[6] == 1 ? nblocks - 1 - i : i;
        if (order == 2)
            for (long long i = nblocks - 1; i > 0; --i) std::swap(blocks[i], blocks[hk::next_rand() % (uint64_t)(i + 1)]);
        std::vector<int> ord(nthreads);
        for (long long bi = 0; bi < nblocks && rc == HK_OK; ++bi) {
            long long blin = blocks[bi];
            blockIdx = uint3{(unsigned)(blin % gx), (unsigned)((blin / gx) % gy), (unsigned)(blin / ((long long)gx * gy))};
            if (__start_hk_shared && __stop_hk_shared)
                std::memset(__start_hk_shared, 0xFF, (size_t)(__stop_hk_shared - __start_hk_shared));
            for (int t = 0; t < nthreads; ++t) {
                hk::Fiber& f = hk::fibers[t];
                getcontext(&f.ctx);
                f.ctx.uc_stack.ss_sp = hk::stacks[t];
                f.ctx.uc_stack.ss_size = hk::kStack;
                f.ctx.uc_link = &hk::main_ctx;
                makecontext(&f.ctx, hk::entry, 0);
                f.state = 0;
            }
            for (;;) {
                hk::order_threads(ord, order);
                for (int t : ord) {
                    if (hk::fibers[t].state != 0) continue;
                    hk::cur = t;
                    threadIdx = uint3{(unsigned)(t % bx), (unsigned)((t / bx) % by), (unsigned)(t / (bx * by))};
                    swapcontext(&hk::main_ctx, &hk::fibers[t].ctx);
                }
                int waiting = 0, done = 0;
                for (auto& f : hk::fibers) (f.state == 1 ? waiting : done) += 1;
                if (waiting == 0) break;
                if (done > 0) { rc = HK_DIVERGENT_BARRIER; break; }
                for (auto& f : hk::fibers) f.state = 0;
            }
        }
    }
    sigaction(SIGSEGV, &old_segv, nullptr);
    sigaction(SIGBUS, &old_bus, nullptr);
    sigaction(SIGILL, &old_ill, nullptr);
    sigaction(SIGTRAP, &old_trap, nullptr);
    sigaltstack(&old_ss, nullptr);
    return rc;
}

namespace hk {
template <typename T> struct Code;
template <> struct Code<int> { static constexpr char c = 'i'; };
template <> struct Code<unsigned int> { static constexpr char c = 'I'; };
template <> struct Code<long long> { static constexpr char c = 'q'; };
template <> struct Code<unsigned long long> { static constexpr char c = 'Q'; };
template <> struct Code<float> { static constexpr char c = 'f'; };
template <> struct Code<double> { static constexpr char c = 'd'; };
template <typename T> struct Code<const T*> { static constexpr char c = 'r'; };  // read-only buffer
template <typename T> struct Code<T*> { static constexpr char c = 'w'; };        // writable buffer

template <typename T> constexpr size_t pointee_size() {
    if constexpr (std::is_pointer_v<T>) return sizeof(std::remove_pointer_t<T>);
    else return sizeof(T);
}

template <typename... A, size_t... I>
void call(void (*f)(A...), void** args, std::index_sequence<I...>) {
    f(*static_cast<std::remove_reference_t<A>*>(args[I])...);
}

// Signature string: one code letter and the element (or value) size per parameter, e.g. "r8,q8,w8".
template <typename... A> const char* signature(void (*)(A...)) {
    static std::string s = [] {
        std::string out;
        ((out += std::string(1, Code<std::remove_cv_t<A>>::c) + std::to_string(pointee_size<std::remove_cv_t<A>>()) + ","), ...);
        return out;
    }();
    return s.c_str();
}
}  // namespace hk

#define HK_EXPORT(NAME)                                                                        \
    static void hk_thunk_##NAME(void** a) {                                                    \
        hk::call(NAME, a, std::make_index_sequence<hk::Arity<decltype(NAME)>::n>{});           \
    }                                                                                          \
    HK_API int hk_launch_##NAME(void** a, const long long* cfg) { return hk_run(hk_thunk_##NAME, a, cfg); }     \
    HK_API const char* hk_signature_##NAME() { return hk::signature(NAME); }

namespace hk {
template <typename F> struct Arity;
template <typename... A> struct Arity<void(A...)> { static constexpr size_t n = sizeof...(A); };
}  // namespace hk
