"""fastconv.bench.machine: CPU details, BLAS kernels and pin warnings, on synthetic inputs only.

Nothing here reads this machine's /proc/cpuinfo, BLAS or environment: every input is made up,
so the results do not depend on where the tests run (and no BLAS variable is changed).
"""
import json

import pytest

from fastconv.bench import machine, report

# two processors, as /proc/cpuinfo lists them; only the first is read
X86_AVX512 = """processor\t: 0
vendor_id\t: GenuineIntel
cpu family\t: 6
model\t\t: 85
model name\t: Intel(R) Xeon(R) Gold 6148 CPU @ 2.40GHz
stepping\t: 4
flags\t\t: fpu sse sse2 ssse3 fma sse4_1 sse4_2 avx f16c avx2 avx512f avx512dq avx512cd avx512bw avx512vl

processor\t: 1
vendor_id\t: SomethingElse
model name\t: not the first processor
flags\t\t: fpu sse sse2
"""
X86_AVX2 = """processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 23
model\t\t: 49
model name\t: AMD EPYC 7742 64-Core Processor
flags\t\t: sse2 ssse3 sse4_1 sse4_2 avx avx2 fma
"""
ARM_SVE = """processor\t: 0
BogoMIPS\t: 2100.00
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp asimddp sve
CPU implementer\t: 0x41
CPU architecture: 8
CPU part\t: 0xd40
"""


def openblas(architecture, version="0.3.27", library="libopenblas64_p-r0-abc.so"):
    return {"user_api": "blas", "internal_api": "openblas", "version": version,
            "num_threads": 2, "filepath": "/site-packages/numpy.libs/" + library,
            "architecture": architecture}


MKL = {"user_api": "blas", "internal_api": "mkl", "version": "2024.1", "num_threads": 2,
       "filepath": "/lib/libmkl_rt.so.2", "threading_layer": "intel"}
OPENMP = {"user_api": "openmp", "internal_api": "openmp", "version": None, "num_threads": 2,
          "filepath": "/lib/libgomp.so.1"}


# --- /proc/cpuinfo ---------------------------------------------------------------------------

def test_parse_cpuinfo_reads_the_first_processor():
    cpu = machine.parse_cpuinfo(X86_AVX512)
    assert cpu["model_name"] == "Intel(R) Xeon(R) Gold 6148 CPU @ 2.40GHz"
    assert (cpu["vendor"], cpu["family"], cpu["model"], cpu["stepping"]) == ("GenuineIntel", 6, 85, 4)
    assert "avx512f" in cpu["flags"] and cpu["flags"][0] == "fpu"
    assert machine.vector_extensions(cpu["flags"]) == [
        "sse2", "ssse3", "sse4_1", "sse4_2", "avx", "avx2", "fma", "f16c",
        "avx512f", "avx512dq", "avx512cd", "avx512bw", "avx512vl"]


def test_parse_cpuinfo_arm_and_empty():
    cpu = machine.parse_cpuinfo(ARM_SVE)
    assert cpu["model_name"] is None and cpu["family"] is None
    assert (cpu["implementer"], cpu["part"]) == ("0x41", "0xd40")
    assert machine.vector_extensions(cpu["flags"]) == ["asimd", "asimdhp", "asimddp", "sve"]
    empty = machine.parse_cpuinfo("")
    assert empty["flags"] == [] and empty["model_name"] is None


@pytest.mark.parametrize("flags, architecture, expected", [
    (["sse2", "avx", "avx2", "fma", "avx512f"], "x86_64", ("AVX-512", "avx512f")),
    (["sse2", "avx", "avx2", "fma"], "x86_64", ("AVX2", "avx2")),
    (["sse2", "avx", "avx2"], "x86_64", ("AVX", "avx")),  # AVX2 kernels need FMA as well
    (["sse2", "sse4_2"], "AMD64", ("SSE2", "sse2")),
    (["asimd", "sve"], "aarch64", ("SVE", "sve")),
    (["asimd"], "arm64", ("NEON", "asimd")),
    (["altivec"], "ppc64le", (None, None)),  # a family this does not know
    ([], "x86_64", (None, None)),  # no cpuinfo: no judgment
])
def test_cpu_tier(flags, architecture, expected):
    assert machine.cpu_tier(flags, architecture) == expected


# --- kernel names and pins -------------------------------------------------------------------

@pytest.mark.parametrize("internal_api, name, tier", [
    ("openblas", "Haswell", "AVX2"), ("openblas", "HASWELL", "AVX2"), ("openblas", "Zen", "AVX2"),
    ("openblas", "SkylakeX", "AVX-512"), ("openblas", "Cooperlake", "AVX-512"),
    ("openblas", "Sandybridge", "AVX"), ("openblas", "Prescott", "SSE2"),
    ("openblas", "neoversev1", "SVE"), ("openblas", "ARMV8", "NEON"),
    ("blis", "zen4", "AVX-512"), ("blis", "haswell", "AVX2"), ("blis", "skx", "AVX-512"),
    ("mkl", "AVX512_E1", "AVX-512"), ("mkl", "avx2", "AVX2"), ("mkl", "SSE4_2", "SSE2"),
    ("mkl", "AUTO", None), ("openblas", "NoSuchCore", None), ("openblas", None, None),
    ("openmp", "Haswell", None),
])
def test_kernel_tier(internal_api, name, tier):
    assert machine.kernel_tier(internal_api, name) == tier


@pytest.mark.parametrize("variable, value, tier", [
    ("OPENBLAS_CORETYPE", "Haswell", "AVX2"), ("OPENBLAS_CORETYPE", "skylakex", "AVX-512"),
    ("BLIS_ARCH_TYPE", "haswell", "AVX2"), ("MKL_ENABLE_INSTRUCTIONS", "AVX2", "AVX2"),
    ("MKL_CBWR", "BRANCH=AVX,STRICT", "AVX"), ("MKL_CBWR", "AUTO", None),
    ("MKL_CBWR", "COMPATIBLE", "SSE2"), ("MKL_DEBUG_CPU_TYPE", "5", "AVX2"),
    ("MKL_DEBUG_CPU_TYPE", "2", None), ("OPENBLAS_L2_SIZE", "512", None),
])
def test_pin_tier(variable, value, tier):
    assert machine.pin_tier(variable, value) == tier


# --- the warnings ----------------------------------------------------------------------------

AVX512_FLAGS = machine.parse_cpuinfo(X86_AVX512)["flags"]
AVX2_FLAGS = machine.parse_cpuinfo(X86_AVX2)["flags"]


def test_openblas_coretype_haswell_on_avx512_warns():
    environ = {"OPENBLAS_CORETYPE": "Haswell", "OPENBLAS_L2_SIZE": "512"}
    warnings = machine.blas_warnings([OPENMP, openblas("Haswell")], AVX512_FLAGS, environ, "x86_64")
    assert len(warnings) == 1
    text = warnings[0]
    assert text.startswith("WARNING: OPENBLAS_CORETYPE=Haswell holds OpenBLAS to its AVX2 kernels")
    assert "AVX-512 (avx512f)" in text and "0.3.27" in text and "libopenblas64_p-r0-abc.so" in text
    assert "reports Haswell" in text and "torch" in text
    assert "env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python -m fastconv.bench" in text


def test_one_warning_per_pin_naming_every_library_it_holds():
    environ = {"OPENBLAS_CORETYPE": "Haswell"}
    entries = [openblas("Haswell", library="numpy-openblas.so"),
               openblas("Haswell", version="0.3.30", library="scipy-openblas.so")]
    warnings = machine.blas_warnings(entries, AVX512_FLAGS, environ, "x86_64")
    assert len(warnings) == 1
    assert "numpy-openblas.so" in warnings[0] and "scipy-openblas.so" in warnings[0]
    assert "env -u OPENBLAS_CORETYPE python" in warnings[0]  # no L2 size set, none to unset


@pytest.mark.parametrize("entries, flags, environ", [
    ([openblas("SkylakeX")], AVX512_FLAGS, {}),  # not pinned, full speed
    ([openblas("SkylakeX")], AVX512_FLAGS, {"OPENBLAS_CORETYPE": "SkylakeX"}),  # pinned at the top
    ([openblas("Haswell")], AVX2_FLAGS, {"OPENBLAS_CORETYPE": "Haswell"}),  # the CPU's own tier
    ([openblas("Zen")], AVX2_FLAGS, {}),
    ([MKL], AVX512_FLAGS, {"OPENBLAS_CORETYPE": "Haswell"}),  # no OpenBLAS loaded to hold
    ([OPENMP], AVX512_FLAGS, {"MKL_ENABLE_INSTRUCTIONS": "AVX2"}),  # no MKL loaded
    ([openblas("Haswell")], [], {"OPENBLAS_CORETYPE": "Haswell"}),  # no cpuinfo: no judgment
    ([openblas("NoSuchCore")], AVX512_FLAGS, {"OPENBLAS_CORETYPE": "NoSuchCore"}),
])
def test_no_warning(entries, flags, environ):
    assert machine.blas_warnings(entries, flags, environ, "x86_64") == []


def test_mkl_pins_warn():
    for variable, value in (("MKL_ENABLE_INSTRUCTIONS", "AVX2"), ("MKL_DEBUG_CPU_TYPE", "5"),
                            ("MKL_CBWR", "BRANCH=AVX")):
        warnings = machine.blas_warnings([MKL], AVX512_FLAGS, {variable: value}, "x86_64")
        assert len(warnings) == 1 and warnings[0].startswith(f"WARNING: {variable}={value} holds MKL")
        assert "libmkl_rt.so.2" in warnings[0]


def test_a_library_below_the_cpu_without_a_pin_warns():
    warnings = machine.blas_warnings([openblas("Haswell")], AVX512_FLAGS, {}, "x86_64")
    assert len(warnings) == 1
    assert "runs its Haswell kernels (AVX2) on a CPU with AVX-512" in warnings[0]
    assert "nothing in the environment pins it" in warnings[0]


def test_arm_pin_below_sve_warns():
    flags = machine.parse_cpuinfo(ARM_SVE)["flags"]
    warnings = machine.blas_warnings([openblas("ARMV8")], flags, {"OPENBLAS_CORETYPE": "ARMV8"},
                                     "aarch64")
    assert len(warnings) == 1 and "NEON kernels on a CPU with SVE (sve)" in warnings[0]


# --- the machine fields, the footer and the JSON ---------------------------------------------

def test_describe_fields_are_json_and_complete():
    fields = machine.describe(X86_AVX512, [OPENMP, openblas("Haswell")],
                              {"OPENBLAS_CORETYPE": "Haswell", "HOME": "/root"}, "x86_64")
    fields = json.loads(json.dumps(fields))
    assert fields["cpu_details"] == {
        "model_name": "Intel(R) Xeon(R) Gold 6148 CPU @ 2.40GHz", "vendor": "GenuineIntel",
        "family": 6, "model": 85, "stepping": 4, "implementer": None, "part": None,
        "architecture": "x86_64",
        "vector_extensions": ["sse2", "ssse3", "sse4_1", "sse4_2", "avx", "avx2", "fma", "f16c",
                              "avx512f", "avx512dq", "avx512cd", "avx512bw", "avx512vl"],
        "widest_blas_tier": "AVX-512",
    }
    assert fields["threadpools"][1] == {
        "user_api": "blas", "internal_api": "openblas", "version": "0.3.27", "num_threads": 2,
        "library": "libopenblas64_p-r0-abc.so", "architecture": "Haswell", "architecture_tier": "AVX2",
    }
    assert fields["threadpools"][0]["architecture_tier"] is None
    assert fields["blas_environment"] == {"OPENBLAS_CORETYPE": "Haswell"}  # HOME is no BLAS setting
    assert len(fields["blas_warnings"]) == 1


_REAL_MACHINE_INFO = report.machine_info


def _synthetic_machine_info(threads, torch=None):
    return _REAL_MACHINE_INFO(threads, torch, cpuinfo_text=X86_AVX512,
                               threadpools=[OPENMP, openblas("Haswell")],
                               environ={"OPENBLAS_CORETYPE": "Haswell"}, architecture="x86_64")


def test_cli_footer_and_json_name_the_cpu_the_blas_and_the_pin(tmp_path, monkeypatch, capsys):
    from fastconv.bench.__main__ import main

    monkeypatch.setattr(report, "machine_info", _synthetic_machine_info)
    json_path = tmp_path / "out.json"
    assert main(["--tiny", "--only", "tiny-1x1", "--threads", "1", "--json", str(json_path)]) == 0
    captured = capsys.readouterr()
    footer = captured.out.split("geometric mean", 1)[1]
    assert ("CPU: Intel(R) Xeon(R) Gold 6148 CPU @ 2.40GHz (GenuineIntel, family 6, model 85); "
            "vector extensions: sse2 ") in footer and "avx512f" in footer
    assert "blas: openblas 0.3.27 (libopenblas64_p-r0-abc.so), Haswell kernels (AVX2), 2 threads" in footer
    assert "BLAS environment: OPENBLAS_CORETYPE=Haswell" in footer
    assert "WARNING: OPENBLAS_CORETYPE=Haswell holds OpenBLAS to its AVX2 kernels" in footer
    assert "WARNING: OPENBLAS_CORETYPE=Haswell" in captured.err  # also before the timing starts

    document = json.loads(json_path.read_text())
    recorded = document["machine"]
    assert recorded["cpu"] == "Intel(R) Xeon(R) Gold 6148 CPU @ 2.40GHz"
    assert recorded["cpu_details"]["family"] == 6 and recorded["cpu_details"]["model"] == 85
    assert "avx512f" in recorded["cpu_details"]["vector_extensions"]
    blas = [entry for entry in recorded["threadpools"] if entry["user_api"] == "blas"]
    assert [(entry["internal_api"], entry["version"], entry["architecture"], entry["architecture_tier"])
            for entry in blas] == [("openblas", "0.3.27", "Haswell", "AVX2")]
    assert recorded["blas_environment"] == {"OPENBLAS_CORETYPE": "Haswell"}
    assert recorded["blas_warnings"] and recorded["blas_warnings"][0] in document["notes"]


def test_machine_info_has_the_fields_here():
    # the real readers: only the presence and types of the fields are checked, not their values
    recorded = report.machine_info(1)
    for key in ("cpu", "cpu_details", "threadpools", "blas_environment", "blas_warnings", "fastconv_path"):
        assert key in recorded
    assert isinstance(recorded["cpu_details"]["vector_extensions"], list)
    assert isinstance(recorded["blas_warnings"], list)
    json.dumps(recorded)
