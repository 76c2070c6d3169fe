"""CPU facts that decide speed: vendor/model, the vector extensions that matter, native bf16.

bf16 autocast is fast only where the CPU executes bf16 in hardware (AVX512_BF16 or AMX tiles,
which oneDNN uses for convolutions and matmuls); elsewhere oneDNN emulates it and a training step
is about 10× slower than fp32 (measured on this project's hosts: benchmarks/RESULTS.md). torch
reports the instructions through ``torch.cpu._is_avx512_bf16_supported`` and
``_is_amx_tile_supported`` (cpuinfo). Those ignore the ISA caps a user can put on torch and oneDNN
(``ATEN_CPU_CAPABILITY``, ``ONEDNN_MAX_CPU_ISA``), so the caps are read here too: under such a cap
the bf16 kernels are not used even on a bf16 CPU (this is also how a bf16 host imitates a CPU
without bf16 in the benchmarks).
"""

from __future__ import annotations

import os
import platform
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path

# /proc/cpuinfo flags worth showing a user before a long run (x86; ARM reports its own names).
FLAGS_OF_INTEREST = ("avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "avx512_fp16",
                     "avx_vnni", "asimd", "bf16", "sve")

# oneDNN ISA names (ONEDNN_MAX_CPU_ISA) that include bf16 instructions; any other cap excludes them.
_ONEDNN_BF16_ISAS = ("AVX512_CORE_BF16", "AVX512_CORE_FP16", "AVX512_CORE_AMX", "AVX512_CORE_AMX_FP16",
                     "AVX10_1_512", "AVX10_1_512_AMX", "AVX10_1_512_AMX_FP16", "AVX10_2_512",
                     "AVX10_2_512_AMX_2", "ALL")


@dataclass(frozen=True)
class CpuInfo:
    model: str
    flags: tuple[str, ...]  # the FLAGS_OF_INTEREST this CPU reports
    torch_capability: str  # the kernel family torch dispatches to: DEFAULT | AVX2 | AVX512 | ...
    avx512_bf16: bool
    amx: bool
    isa_cap: str | None  # "ONEDNN_MAX_CPU_ISA=AVX2" etc. when the user capped the ISA
    native_bf16: bool = field(default=False)
    reason: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


@lru_cache(maxsize=1)
def read_cpu_info() -> CpuInfo:
    """This CPU's facts (cached: they do not change while the process runs)."""
    import torch

    avx512_bf16 = bool(torch.cpu._is_avx512_bf16_supported())
    amx = bool(torch.cpu._is_amx_tile_supported())
    cap = isa_cap_excluding_bf16()
    native, reason = native_bf16_verdict(avx512_bf16, amx, cap)
    return CpuInfo(model=cpu_model(), flags=tuple(f for f in FLAGS_OF_INTEREST if f in _proc_flags()),
                   torch_capability=str(torch.backends.cpu.get_cpu_capability()), avx512_bf16=avx512_bf16,
                   amx=amx, isa_cap=cap, native_bf16=native, reason=reason)


def native_bf16_verdict(avx512_bf16: bool, amx: bool, isa_cap: str | None) -> tuple[bool, str]:
    """(executes bf16 natively, why) from the instruction flags and any user ISA cap."""
    found = [name for name, present in (("AMX", amx), ("AVX512_BF16", avx512_bf16)) if present]
    if not found:
        return False, "no AMX or AVX512_BF16: bf16 would be emulated (about 10x slower than fp32)"
    if isa_cap:
        return False, f"{'+'.join(found)} present but {isa_cap} keeps the bf16 kernels off"
    return True, f"{'+'.join(found)}: bf16 runs natively"


def isa_cap_excluding_bf16() -> str | None:
    """The environment setting that forbids bf16 kernels, or None."""
    onednn = os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA")
    if onednn and onednn.strip().upper() not in _ONEDNN_BF16_ISAS:
        return f"ONEDNN_MAX_CPU_ISA={onednn}"
    aten = os.environ.get("ATEN_CPU_CAPABILITY", "").strip().lower()
    if aten in ("default", "avx2", "zvector", "vsx"):
        return f"ATEN_CPU_CAPABILITY={aten}"
    return None


def cpu_model() -> str:
    for line in _proc_cpuinfo_lines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "unknown"


def _proc_flags() -> set[str]:
    for line in _proc_cpuinfo_lines():
        if line.startswith(("flags", "Features")):
            return set(line.split(":", 1)[1].split())
    return set()


@lru_cache(maxsize=1)
def _proc_cpuinfo_lines() -> tuple[str, ...]:
    try:
        return tuple(Path("/proc/cpuinfo").read_text().splitlines())
    except OSError:
        return ()
