"""What the benchmark ran on: the CPU and its vector extensions, each BLAS's kernels, and pins that hold a BLAS below the CPU.

Pure functions over /proc/cpuinfo text, threadpoolctl's entries and an environment mapping,
so that the logic is tested on synthetic inputs; `describe` gathers them for this process.

Why it matters: OpenBLAS, BLIS and MKL choose their kernels at load time from the CPU, unless
an environment variable pins them (OPENBLAS_CORETYPE=Haswell runs OpenBLAS's AVX2 kernels on
an AVX-512 CPU, and threadpoolctl then reports the architecture "Haswell"). fastconv and its
NumPy reference run their products on that BLAS; torch's kernels are not pinned. A pinned BLAS
makes fastconv look slower against torch than it is for a user whose BLAS is not pinned.
"""
import os
import platform

# instruction-set tiers a BLAS kernel family is built for, in order, per CPU family
X86_TIERS = ("SSE2", "AVX", "AVX2", "AVX-512")
ARM_TIERS = ("NEON", "SVE")

# OpenBLAS core names (what OPENBLAS_CORETYPE takes and threadpoolctl reports), lower case
OPENBLAS_CORES = {
    "AVX-512": ("skylakex", "cooperlake", "sapphirerapids"),
    "AVX2": ("haswell", "zen", "excavator"),  # OpenBLAS runs Zen on its Haswell kernels
    "AVX": ("sandybridge", "bulldozer", "piledriver", "steamroller"),
    "SSE2": ("prescott", "core2", "penryn", "dunnington", "nehalem", "atom", "opteron",
             "opteron_sse3", "barcelona", "bobcat", "nano", "katmai", "coppermine", "northwood",
             "banias", "athlon"),
    "SVE": ("armv8sve", "armv9sme", "a64fx", "neoversev1", "neoversev2", "neoversen2"),
    "NEON": ("armv8", "cortexa53", "cortexa55", "cortexa57", "cortexa72", "cortexa73",
             "cortexa76", "cortexx1", "cortexx2", "neoversen1", "thunderx", "thunderx2t99",
             "thunderx3t110", "tsv110", "falkor", "emag8180", "vortex", "ampere1"),
}
# BLIS configuration names (BLIS_ARCH_TYPE, threadpoolctl's architecture for BLIS)
BLIS_CONFIGS = {
    "AVX-512": ("skx", "knl", "zen4", "zen5"),
    "AVX2": ("haswell", "zen", "zen2", "zen3"),
    "AVX": ("sandybridge", "excavator", "steamroller", "piledriver", "bulldozer"),
    "SSE2": ("penryn", "generic"),
    "SVE": ("armsve", "a64fx"),
    "NEON": ("cortexa57", "cortexa53", "thunderx2", "firestorm"),
}

# Environment variables that fix a BLAS's kernels, and the library (threadpoolctl's
# internal_api) each one pins. MKL_DEBUG_CPU_TYPE is undocumented; only its common value 5
# (the AVX2 path) is understood.
PIN_VARIABLES = {
    "OPENBLAS_CORETYPE": "openblas",
    "BLIS_ARCH_TYPE": "blis",
    "MKL_ENABLE_INSTRUCTIONS": "mkl",
    "MKL_CBWR": "mkl",
    "MKL_DEBUG_CPU_TYPE": "mkl",
}
# settings that go with a pin, to unset with it
PAIRED_SETTINGS = {"OPENBLAS_CORETYPE": ("OPENBLAS_L2_SIZE",)}
# also reported when set (they change a BLAS's blocking or threads, not its kernels)
OTHER_BLAS_VARIABLES = ("OPENBLAS_L2_SIZE", "OPENBLAS_THREAD_TIMEOUT", "OPENBLAS_NUM_THREADS",
                        "MKL_NUM_THREADS", "BLIS_NUM_THREADS", "OMP_NUM_THREADS")
LIBRARY_NAMES = {"openblas": "OpenBLAS", "blis": "BLIS", "mkl": "MKL"}

# vector extensions worth naming, in this order (x86 flags, then ARM features)
VECTOR_FLAGS = (
    "sse2", "ssse3", "sse4_1", "sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512dq",
    "avx512cd", "avx512bw", "avx512vl", "avx512ifma", "avx512vbmi", "avx512_vbmi2",
    "avx512_vnni", "avx512_bf16", "avx512_fp16", "avx_vnni", "amx_tile", "amx_bf16",
    "amx_int8", "asimd", "asimdhp", "asimddp", "sve", "sve2", "sme", "bf16", "i8mm",
)


def read_cpuinfo(path="/proc/cpuinfo"):
    """The text of /proc/cpuinfo, or "" where there is none (not Linux)."""
    try:
        with open(path) as handle:
            return handle.read()
    except OSError:
        return ""


def _integer(text):
    try:
        return int(text, 0)
    except (TypeError, ValueError):
        return None


def parse_cpuinfo(text):
    """The first processor's entry of /proc/cpuinfo text.

    Returns a dict: model_name, vendor, family, model, stepping (ints where x86 gives them,
    else None), implementer and part (ARM's, as written) and flags (a list, in file order;
    x86 "flags" or ARM "Features"). Missing fields are None (flags: empty).
    """
    fields = {}
    for line in text.splitlines():
        if not line.strip():
            if fields:
                break  # the end of the first processor's block
            continue
        key, _, value = line.partition(":")
        fields.setdefault(key.strip().lower(), value.strip())
    return {
        "model_name": fields.get("model name") or fields.get("hardware") or None,
        "vendor": fields.get("vendor_id") or None,
        "family": _integer(fields.get("cpu family")),
        "model": _integer(fields.get("model")),
        "stepping": _integer(fields.get("stepping")),
        "implementer": fields.get("cpu implementer"),
        "part": fields.get("cpu part"),
        "flags": (fields.get("flags") or fields.get("features") or "").split(),
    }


def vector_extensions(flags):
    """The vector extensions among `flags`, in VECTOR_FLAGS order."""
    present = set(flags)
    return [flag for flag in VECTOR_FLAGS if flag in present]


def _tiers(machine):
    machine = (machine or "").lower()
    if machine in ("x86_64", "amd64", "i386", "i686"):
        return X86_TIERS
    if machine in ("aarch64", "arm64"):
        return ARM_TIERS
    return None


def cpu_tier(flags, machine):
    """The widest BLAS kernel tier the CPU runs ("AVX-512", "AVX2", ... or "SVE", "NEON"),
    with the flag that shows it: (tier, flag), or (None, None) for an unknown CPU family or
    no flags. /proc/cpuinfo lists only the extensions the operating system has enabled."""
    present = set(flags)
    tiers = _tiers(machine)
    if tiers is X86_TIERS and present:
        if "avx512f" in present:
            return "AVX-512", "avx512f"
        if "avx2" in present and "fma" in present:
            return "AVX2", "avx2"
        if "avx" in present:
            return "AVX", "avx"
        return "SSE2", "sse2"
    if tiers is ARM_TIERS and present:
        return ("SVE", "sve") if "sve" in present else ("NEON", "asimd")
    return None, None


def kernel_tier(internal_api, name):
    """The instruction tier of a BLAS kernel family: OpenBLAS core or BLIS configuration
    names (any case), MKL instruction names (as MKL_ENABLE_INSTRUCTIONS and MKL_CBWR take
    them: SSE4_2, AVX, AVX2, AVX512, AVX512_E1, ...; "AUTO" pins nothing). None if unknown."""
    if not name:
        return None
    key = name.strip()
    if internal_api in ("openblas", "blis"):
        table = OPENBLAS_CORES if internal_api == "openblas" else BLIS_CONFIGS
        for tier, names in table.items():
            if key.lower() in names:
                return tier
        return None
    if internal_api == "mkl":
        key = key.upper()
        if key.startswith(("AVX512", "AVX10")):
            return "AVX-512"
        if key.startswith("AVX2"):
            return "AVX2"
        if key.startswith("AVX"):
            return "AVX"
        if key.startswith(("SSE", "SSSE", "COMPATIBLE")):
            return "SSE2"
    return None


def pin_tier(variable, value):
    """The tier an environment pin holds its library to, or None (not a pin, pins nothing,
    or a value not understood)."""
    library = PIN_VARIABLES.get(variable)
    if library is None or value is None:
        return None
    if variable == "MKL_DEBUG_CPU_TYPE":
        return "AVX2" if value.strip() == "5" else None
    if variable == "MKL_CBWR":  # "AVX2", "BRANCH=AVX2", "AVX2,STRICT"
        value = value.split(",")[0].split("=")[-1]
    return kernel_tier(library, value)


def _below(tier, than, machine):
    tiers = _tiers(machine)
    if tiers is None or tier not in tiers or than not in tiers:
        return False
    return tiers.index(tier) < tiers.index(than)


def blas_environment(environ):
    """{name: value} of the BLAS-related variables set in `environ`, pins first."""
    names = list(PIN_VARIABLES) + list(OTHER_BLAS_VARIABLES)
    return {name: environ[name] for name in names if name in environ}


def _library_label(entry):
    internal_api = entry.get("internal_api")
    name = LIBRARY_NAMES.get(internal_api, internal_api or "a library")
    library = entry.get("library") or os.path.basename(entry.get("filepath") or "")
    details = ", ".join(part for part in (entry.get("version"), library) if part)
    return f"{name} ({details})" if details else name


def blas_warnings(threadpools, flags, environ, machine):
    """Warnings for each loaded BLAS held below what the CPU runs.

    threadpools : threadpoolctl entries (dicts with internal_api, architecture, version,
        library or filepath).
    flags : the CPU's flags (parse_cpuinfo()["flags"]).
    environ : the environment (a mapping).
    machine : platform.machine().

    An environment pin (PIN_VARIABLES) below the CPU's tier gives a warning naming the
    variable, the loaded libraries it holds and how to run without it; a library that reports
    kernels below the CPU's tier with no such pin (e.g. a release that does not know the
    CPU) gives one too. Returns a list of one-line strings (empty: nothing below the CPU, or a
    CPU family this does not know).
    """
    tier, flag = cpu_tier(flags, machine)
    if tier is None:
        return []
    entries = [entry for entry in threadpools if entry.get("user_api") in (None, "blas")]
    warnings = []
    pinned_libraries = set()
    for variable, library in PIN_VARIABLES.items():
        value = environ.get(variable)
        pinned = pin_tier(variable, value)
        held = [entry for entry in entries if entry.get("internal_api") == library]
        if pinned is None or not held or not _below(pinned, tier, machine):
            continue
        pinned_libraries.add(library)
        reports = "; ".join(
            _library_label(entry)
            + (f" reports {entry['architecture']}" if entry.get("architecture") else "")
            for entry in held
        )
        # unset together with the pin: OpenBLAS's L2 size goes with the core type it was set for
        unset = [variable] + [name for name in PAIRED_SETTINGS.get(variable, ()) if name in environ]
        warnings.append(
            f"WARNING: {variable}={value} holds {LIBRARY_NAMES[library]} to its {pinned} kernels on "
            f"a CPU with {tier} ({flag}); loaded: {reports}. fastconv and the NumPy reference "
            f"multiply on that BLAS while torch's kernels are not pinned, so the fc/torch ratios "
            f"are unfair to fastconv. For a fair run (unless this BLAS release needs the pin to "
            f"work on this CPU): env {' '.join('-u ' + name for name in unset)} python -m fastconv.bench ..."
        )
    for entry in entries:
        library = entry.get("internal_api")
        reported = kernel_tier(library, entry.get("architecture"))
        if library in pinned_libraries or reported is None or not _below(reported, tier, machine):
            continue
        warnings.append(
            f"WARNING: {_library_label(entry)} runs its {entry['architecture']} kernels ({reported}) "
            f"on a CPU with {tier} ({flag}) and nothing in the environment pins it (this release "
            f"may not know the CPU): fastconv's and the reference's products run below what the "
            f"CPU can do, torch's need not, so the fc/torch ratios may be unfair to fastconv"
        )
    return warnings


def threadpool_entries(info):
    """threadpoolctl.threadpool_info() entries reduced to what the report keeps, each with the
    tier of its kernels (None where the library reports no architecture)."""
    entries = []
    for item in info:
        entry = {
            "user_api": item.get("user_api"),
            "internal_api": item.get("internal_api"),
            "version": item.get("version"),
            "num_threads": item.get("num_threads"),
            "library": os.path.basename(item.get("filepath") or "") or None,
            "architecture": item.get("architecture"),
        }
        entry["architecture_tier"] = kernel_tier(entry["internal_api"], entry["architecture"])
        entries.append(entry)
    return entries


def describe(cpuinfo_text, threadpool_info, environ, machine):
    """The machine fields of the benchmark's JSON: cpu_details, threadpools, blas_environment,
    blas_warnings (see the functions above)."""
    cpu = parse_cpuinfo(cpuinfo_text)
    tier, _ = cpu_tier(cpu["flags"], machine)
    threadpools = threadpool_entries(threadpool_info)
    return {
        "cpu_details": {
            "model_name": cpu["model_name"],
            "vendor": cpu["vendor"],
            "family": cpu["family"],
            "model": cpu["model"],
            "stepping": cpu["stepping"],
            "implementer": cpu["implementer"],
            "part": cpu["part"],
            "architecture": machine,
            "vector_extensions": vector_extensions(cpu["flags"]),
            "widest_blas_tier": tier,
        },
        "threadpools": threadpools,
        "blas_environment": blas_environment(environ),
        "blas_warnings": blas_warnings(threadpools, cpu["flags"], environ, machine),
    }


def cpu_line(machine_fields):
    """One footer line naming the CPU: model, vendor, family/model numbers, vector extensions."""
    details = machine_fields["cpu_details"]
    numbers = [details["vendor"]] if details["vendor"] else []
    if details["family"] is not None:
        numbers.append(f"family {details['family']}")
    if details["model"] is not None:
        numbers.append(f"model {details['model']}")
    if details["implementer"]:
        numbers.append(f"implementer {details['implementer']}, part {details['part']}")
    name = details["model_name"] or platform.processor() or details["architecture"] or "unknown"
    extensions = " ".join(details["vector_extensions"]) or "none listed"
    widest = f" (widest BLAS tier: {details['widest_blas_tier']})" if details["widest_blas_tier"] else ""
    return (f"CPU: {name}" + (f" ({', '.join(numbers)})" if numbers else "")
            + f"; vector extensions: {extensions}{widest}")


def blas_lines(machine_fields):
    """Footer lines: each loaded thread pool (BLAS and OpenMP) with its kernels, then the
    BLAS variables set in the environment."""
    lines = []
    for entry in machine_fields["threadpools"]:
        kernels = ""
        if entry["architecture"]:
            tier = f" ({entry['architecture_tier']})" if entry["architecture_tier"] else ""
            kernels = f", {entry['architecture']} kernels{tier}"
        name = " ".join(part for part in (entry["internal_api"], entry["version"]) if part)
        threads = entry["num_threads"]
        lines.append(f"{entry['user_api'] or 'library'}: {name or '?'} ({entry['library']}){kernels}, "
                     f"{threads} thread{'' if threads == 1 else 's'}")
    environment = machine_fields["blas_environment"]
    if environment:
        lines.append("BLAS environment: " + " ".join(f"{name}={value}" for name, value in environment.items()))
    return lines
