"""A host stand-in for CuPy and the CUDA runtime, so the real kernel source runs on the CPU.

`HostCuda` is a module-shaped object that `recon.ops._cupy_kernels` imports as `cupy` (a
private copy of that module is loaded with it, see `load_kernels_module`). What is substituted is
only what a GPU provides: device memory, streams, NVRTC and cuFFT. Everything else is the
project's own code: `cupy_backend` computes shapes, strides, flags and grids, `_cupy_kernels`
converts arguments and launches, and the kernel text `kernel_source()` returns is compiled
unchanged (after `shim.h`) by g++ and executed:

* `RawModule(code, options)` compiles exactly `code` (with the `-D` options NVRTC would get) into
  a shared library, cached per session on the source text, options and variant.
* A launch runs every block of the grid and every thread of each block as fibers (`runner.h`),
  in forward, reverse or shuffled order. Kernel arguments are type-checked against the C
  signature (an `int` parameter must get an `np.int32`, a pointer a CuPy view).
* Each buffer is copied, for the launch, into its own mapping with inaccessible guard pages
  before and after it, placed flush against the guard after it (or, in the reverse-order
  variant, the guard before it): a read or write outside the allocation faults and the launch
  fails naming the argument. Read-only (`const`) buffers are mapped read-only.
* cuFFT's unnormalized 2-D transforms are computed by NumPy's FFT on the host.

Counters in `stats` record what one op call costs on the host side: DLPack conversions, stream
objects created, device guards, launches and the bytes each launch's buffers span.
"""

from __future__ import annotations

import ctypes
import hashlib
import mmap
import re
import subprocess
import sys
import tempfile
import types
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

HERE = Path(__file__).parent
PAGE = mmap.PAGESIZE
GUARD = 16 * PAGE
ORDERS = {"forward": 0, "reverse": 1, "shuffled": 2}
_ERRORS = {2: "divergent __syncthreads (some threads finished while others wait at the barrier)",
           3: "trap (UBSan or __trap) in the kernel", 4: "bad launch configuration"}
_SCALARS = {"i4": np.int32, "I4": np.uint32, "q8": np.int64, "Q8": np.uint64, "f4": np.float32, "d8": np.float64}
_LIB_CACHE: dict[str, "_Library"] = {}
_BUILD_DIR = Path(tempfile.mkdtemp(prefix="recon-hostcuda-"))  # one per test session
_libc = ctypes.CDLL(None, use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
_libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
_libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]


class KernelError(RuntimeError):
    """A kernel launch failed on the host (fault, trap, divergent barrier, wrong argument types)."""


class CompileError(RuntimeError):
    """g++ rejected the kernel source."""


@dataclass
class Variant:
    """How kernels run: thread/block order, shuffle seed, UBSan, guard placement, source edit."""

    order: str = "forward"
    seed: int = 0
    ubsan: bool = False
    mutate: Callable[[str], str] | None = None
    execute: bool = True  # False: record launches and bytes only (traffic benchmark at full size)


@dataclass
class Stats:
    """Host-side costs recorded by the stand-in."""

    from_dlpack: int = 0
    dlpack_by_tensor: Counter = field(default_factory=Counter)
    streams_created: int = 0
    device_guards: int = 0
    launches: list[tuple[str, int, int]] = field(default_factory=list)  # (kernel, bytes read, bytes written)
    ffts: list[tuple[str, int]] = field(default_factory=list)  # (direction, bytes of the array)

    def reset(self) -> None:
        self.__init__()  # type: ignore[misc]


# --------------------------------------------------------------------------- compiling


class _Library:
    def __init__(self, path: Path, kernels: list[str]) -> None:
        self.lib = ctypes.CDLL(str(path))
        self.kernels = kernels
        self.lib.hk_fault_addr.restype = ctypes.c_void_p
        self.lib.hk_barrier_count.restype = ctypes.c_ulonglong
        self.signatures: dict[str, list[tuple[str, int]]] = {}
        for k in kernels:
            sig = getattr(self.lib, f"hk_signature_{k}")
            sig.restype = ctypes.c_char_p
            self.signatures[k] = [(s[0], int(s[1:])) for s in sig().decode().strip(",").split(",") if s]
            getattr(self.lib, f"hk_launch_{k}").restype = ctypes.c_int


def _gxx(args: list[str], source: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["g++", *args], input=source, capture_output=True, text=True)


def compile_library(code: str, options: tuple[str, ...], ubsan: bool) -> _Library:
    """Compile `code` after shim.h with the launcher for each `extern "C"` kernel (cached)."""
    defines = [o for o in options if o.startswith("-D")]
    shim = (HERE / "shim.h").read_text() + (HERE / "runner.h").read_text()
    key = hashlib.sha256("\0".join([code, shim, *defines, str(ubsan)]).encode()).hexdigest()[:20]
    if key in _LIB_CACHE:
        return _LIB_CACHE[key]
    base = ["-std=c++17", "-x", "c++", f"-I{HERE}", *defines]
    pre = _gxx([*base, "-E", "-P", "-include", str(HERE / "shim.h"), "-"], code)
    if pre.returncode:
        raise CompileError(pre.stderr)
    kernels = re.findall(r'extern\s+"C"\s+void\s+(\w+)\s*\(', pre.stdout)
    full = code + '\n#include "runner.h"\n' + "".join(f"HK_EXPORT({k})\n" for k in kernels)
    out = _BUILD_DIR / f"k_{key}.so"
    # Hidden visibility and no GNU_UNIQUE symbols: each variant's `__shared__` statics (template
    # function statics) stay its own, instead of being merged process-wide with another variant's.
    flags = ["-O0", "-g0", "-shared", "-fPIC", "-U_FORTIFY_SOURCE", "-fno-strict-aliasing", "-fvisibility=hidden",
             "-fvisibility-inlines-hidden", "-fno-gnu-unique",
             "-include", str(HERE / "shim.h")]
    if ubsan:
        flags += ["-fsanitize=undefined", "-fsanitize-undefined-trap-on-error", "-fno-sanitize-recover=all"]
    res = _gxx([*base, *flags, "-o", str(out), "-"], full)
    if res.returncode:
        raise CompileError(res.stderr)
    lib = _LIB_CACHE[key] = _Library(out, kernels)
    return lib


# --------------------------------------------------------------------------- memory


class _Mapping:
    """One buffer's host copy between guard pages."""

    def __init__(self, nbytes: int, at_end: bool, read_only: bool) -> None:
        self.nbytes = nbytes
        self.data_len = max(PAGE, -(-nbytes // PAGE) * PAGE)
        self.total = GUARD + self.data_len + GUARD
        addr = _libc.mmap(None, self.total, 0, 0x22, -1, 0)  # PROT_NONE, MAP_PRIVATE|MAP_ANONYMOUS
        if addr in (None, ctypes.c_void_p(-1).value):
            raise MemoryError("mmap failed")
        self.base = addr
        if _libc.mprotect(addr + GUARD, self.data_len, 3):  # PROT_READ|PROT_WRITE
            raise OSError(ctypes.get_errno(), "mprotect failed")
        self.start = addr + GUARD + (self.data_len - nbytes if at_end else 0)
        self.read_only = read_only

    def seal(self) -> None:
        if self.read_only:
            _libc.mprotect(self.base + GUARD, self.data_len, 1)  # PROT_READ

    def close(self) -> None:
        _libc.munmap(self.base, self.total)


class ndarray:  # noqa: N801 (CuPy's name)
    """What `cupy.from_dlpack` returns here: a view of a host torch tensor."""

    def __init__(self, t: torch.Tensor) -> None:
        self.tensor = t
        self.data = types.SimpleNamespace(ptr=t.data_ptr())
        self.shape = tuple(t.shape)
        self.dtype = t.dtype

    def __setitem__(self, key: Any, value: "ndarray") -> None:
        self.tensor[key] = value.tensor


# --------------------------------------------------------------------------- launching


class _Function:
    def __init__(self, cuda: "HostCuda", lib: _Library, name: str) -> None:
        self.cuda, self.lib, self.name = cuda, lib, name
        self.signature = lib.signatures[name]
        self.fn = getattr(lib.lib, f"hk_launch_{name}")

    def __call__(self, grid: tuple[int, ...], block: tuple[int, ...], args: tuple[Any, ...],
                 shared_mem: int = 0, stream: Any = None) -> None:
        if len(args) != len(self.signature):
            raise KernelError(f"{self.name}: {len(args)} arguments for {len(self.signature)} parameters")
        spans: list[tuple[int, int, int]] = []  # (start, end, argument index)
        for i, (a, (code, size)) in enumerate(zip(args, self.signature)):
            if code in "rw":
                if not isinstance(a, ndarray):
                    raise KernelError(f"{self.name}: parameter {i} is a pointer, got {type(a).__name__}")
                st = a.tensor.untyped_storage()  # exactly the extent of the exported view
                spans.append((st.data_ptr(), st.data_ptr() + st.nbytes(), i))
            else:
                want = _SCALARS[f"{code}{size}"]
                if type(a) is not want:
                    raise KernelError(f"{self.name}: parameter {i} is {want.__name__}, got {type(a).__name__}")
        if not self.cuda.variant.execute:
            self._record(args, self.signature)
            return
        groups: list[dict[str, Any]] = []  # overlapping views share one buffer (in-place arguments)
        for lo, hi, i in sorted(spans):
            if groups and lo < groups[-1]["hi"]:
                groups[-1]["hi"] = max(groups[-1]["hi"], hi)
                groups[-1]["args"].append(i)
            else:
                groups.append({"lo": lo, "hi": hi, "args": [i]})
        at_end = self.cuda.variant.order != "reverse"
        try:
            for gr in groups:
                gr["writable"] = any(self.signature[i][0] == "w" for i in gr["args"])
                m = gr["map"] = _Mapping(gr["hi"] - gr["lo"], at_end, not gr["writable"])
                ctypes.memmove(m.start, gr["lo"], m.nbytes)
                m.seal()
            where = {i: gr for gr in groups for i in gr["args"]}
            holders: list[Any] = []
            for i, (a, (code, size)) in enumerate(zip(args, self.signature)):
                if code in "rw":
                    gr = where[i]
                    holders.append(ctypes.c_void_p(gr["map"].start + a.data.ptr - gr["lo"]))
                else:
                    holders.append(np.array(a))
            argv = (ctypes.c_void_p * len(holders))(
                *[ctypes.addressof(h) if isinstance(h, ctypes.c_void_p) else h.ctypes.data for h in holders])
            g = tuple(grid) + (1,) * (3 - len(grid))
            b = tuple(block) + (1,) * (3 - len(block))
            cfg = (ctypes.c_longlong * 8)(*g, *b, ORDERS[self.cuda.variant.order], self.cuda.variant.seed)
            rc = self.fn(argv, cfg)
            if rc == 1:
                raise KernelError(f"{self.name}: {self._describe_fault(groups)}")
            if rc:
                raise KernelError(f"{self.name}: {_ERRORS.get(rc, f'error {rc}')}")
            for gr in groups:
                if gr["writable"]:
                    ctypes.memmove(gr["lo"], gr["map"].start, gr["map"].nbytes)
        finally:
            for gr in groups:
                if "map" in gr:
                    gr["map"].close()
        self._record(args, self.signature)

    def _record(self, args: tuple[Any, ...], signature: list[tuple[str, int]]) -> None:
        read = sum(_span(a.tensor) for a, (code, _) in zip(args, signature) if code == "r" and isinstance(a, ndarray))
        written = sum(_span(a.tensor) for a, (code, _) in zip(args, signature) if code == "w" and isinstance(a, ndarray))
        self.cuda.stats.launches.append((self.name, read, written))

    def _describe_fault(self, groups: list[dict[str, Any]]) -> str:
        addr = self.lib.lib.hk_fault_addr() or 0
        for gr in groups:
            m = gr["map"]
            if m.base <= addr < m.base + m.total:
                names = ", ".join(f"argument {i}" for i in gr["args"])
                off = addr - m.start
                where = ("before the start" if off < 0 else
                         "past the end" if off >= m.nbytes else "inside (a write to a read-only buffer)")
                return f"memory fault {where} of the buffer of {names} (offset {off} bytes, buffer {m.nbytes} bytes)"
        return f"memory fault at {addr:#x}, outside every argument buffer"


def _span(t: torch.Tensor) -> int:
    """Bytes a view spans once (its elements, broadcast axes counted once)."""
    return t.numel() * t.element_size() if t.numel() else 0


class RawModule:
    def __init__(self, cuda: "HostCuda", code: str, options: tuple[str, ...] = ()) -> None:
        self.cuda = cuda
        if cuda.variant.mutate is not None:
            code = cuda.variant.mutate(code)
        self.code, self.options = code, tuple(options)
        self._lib: _Library | None = None

    def compile(self) -> None:
        if self._lib is None:
            self._lib = compile_library(self.code, self.options, self.cuda.variant.ubsan)
            self.cuda.stats_compiles += 1

    def get_function(self, name: str) -> _Function:
        self.compile()
        assert self._lib is not None
        if name not in self._lib.kernels:
            raise KernelError(f"no kernel {name!r} in the module (has {self._lib.kernels})")
        return _Function(self.cuda, self._lib, name)


# --------------------------------------------------------------------------- the CuPy stand-in


class HostCuda:
    """The objects `_cupy_kernels` uses from `cupy`, `cupyx.scipy.fft` and `torch.cuda`."""

    def __init__(self, variant: Variant | None = None) -> None:
        self.variant = variant or Variant()
        self.stats = Stats()
        self.stats_compiles = 0
        self.allocator: Any = None
        host = self

        class _Stream:
            def __init__(self, ptr: int) -> None:
                host.stats.streams_created += 1
                self.ptr = ptr

            def __enter__(self) -> "_Stream":
                return self

            def __exit__(self, *exc: Any) -> None:
                return None

        class _Device:
            def __init__(self, index: int = 0) -> None:
                host.stats.device_guards += 1

            def __enter__(self) -> "_Device":
                return self

            def __exit__(self, *exc: Any) -> None:
                return None

        def from_dlpack(t: Any) -> ndarray:
            host.stats.from_dlpack += 1
            host.stats.dlpack_by_tensor[(t.data_ptr(), tuple(t.shape), t.stride())] += 1
            return ndarray(torch.from_dlpack(t.__dlpack__()))  # torch's own export rules apply

        def set_allocator(fn: Any) -> None:
            host.allocator = fn

        runtime = types.SimpleNamespace(getDeviceCount=lambda: 1, getDevice=lambda: 0)
        self.cupy = types.ModuleType("cupy")
        self.cupy.RawModule = lambda code, options=(): RawModule(host, code, options)  # type: ignore[attr-defined]
        self.cupy.from_dlpack = from_dlpack  # type: ignore[attr-defined]
        self.cupy.ndarray = ndarray  # type: ignore[attr-defined]
        self.cupy.cuda = types.SimpleNamespace(  # type: ignore[attr-defined]
            ExternalStream=_Stream, Device=_Device, runtime=runtime, set_allocator=set_allocator,
            UnownedMemory=lambda ptr, size, owner: (ptr, size, owner), MemoryPointer=lambda mem, off: mem)
        self.fft = types.ModuleType("cupyx.scipy.fft")
        self.fft.fft2 = self._fft(inverse=False)  # type: ignore[attr-defined]
        self.fft.ifft2 = self._fft(inverse=True)  # type: ignore[attr-defined]
        self.cupyx = types.ModuleType("cupyx")
        self.cupyx.scipy = types.ModuleType("cupyx.scipy")  # type: ignore[attr-defined]
        self.cupyx.scipy.fft = self.fft  # type: ignore[attr-defined]
        self.torch_cuda = types.SimpleNamespace(
            current_device=lambda: 0,
            current_stream=lambda: types.SimpleNamespace(cuda_stream=0),
            device=lambda d: _Device(0),
        )

    def _fft(self, inverse: bool) -> Callable[..., ndarray]:
        def run(a: ndarray, axes: tuple[int, int] = (-2, -1), norm: str = "backward",
                overwrite_x: bool = False) -> ndarray:
            t = a.tensor
            if not t.is_contiguous():
                raise KernelError("cuFFT stand-in: the backend hands cuFFT contiguous arrays only")
            self.stats.ffts.append(("inverse" if inverse else "forward", _span(t)))
            if not self.variant.execute:
                return a
            a_np = t.numpy()  # NumPy's pocketfft: no torch op, so per-call copy counts see only the backend's
            fn = np.fft.ifft2 if inverse else np.fft.fft2
            res = fn(a_np, axes=axes, norm=norm)
            if overwrite_x:
                a_np[...] = res
                return a
            return ndarray(torch.from_numpy(res))

        return run


def load_kernels_module(host: HostCuda) -> types.ModuleType:
    """A private copy of `recon.ops._cupy_kernels` bound to `host` instead of CuPy and torch.cuda."""
    import importlib.util

    import recon.ops

    path = Path(recon.ops.__file__).parent / "_cupy_kernels.py"
    spec = importlib.util.spec_from_file_location("recon.ops._cupy_kernels_host", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    names = {"cupy": host.cupy, "cupyx": host.cupyx, "cupyx.scipy": host.cupyx.scipy, "cupyx.scipy.fft": host.fft}
    saved = {n: sys.modules.get(n) for n in names}
    sys.modules.update(names)
    try:
        spec.loader.exec_module(mod)
    finally:
        for n, m in saved.items():
            if m is None:
                sys.modules.pop(n, None)
            else:
                sys.modules[n] = m
    mod._cuda = host.torch_cuda  # type: ignore[attr-defined]
    return mod

