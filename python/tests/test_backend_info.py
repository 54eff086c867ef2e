"""`llm-run --backend-info`: the backends built in and, for CUDA, the library versions built with and loaded, the
driver and the devices (or why there is none). Must work, exit 0, on a machine without a GPU."""

import glob
import os
import re
import shutil
import subprocess

import pytest

import llmir

try:
    LLM_RUN = llmir.tool_path("llm-run")
except FileNotFoundError:
    if os.environ.get("LLMIR_REQUIRE_TOOLS") == "1":
        raise
    pytest.skip("LLMIR tools not built", allow_module_level=True)

VERSION = r"\d+\.\d+(\.\d+)?"


def backend_info(env=None):
    proc = subprocess.run([LLM_RUN, "--backend-info"], capture_output=True, text=True, timeout=120,
                          env=None if env is None else {**os.environ, **env})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout.splitlines()


def built_cuda_version():
    """major.minor of the nvcc this build used (CMake's record), if the build dir is known."""
    build = os.environ.get("LLMIR_BUILD_DIR") or os.path.join(os.path.dirname(LLM_RUN), "..")
    for path in glob.glob(os.path.join(build, "CMakeFiles", "*", "CMakeCUDACompiler.cmake")):
        m = re.search(r'CMAKE_CUDA_COMPILER_VERSION "(\d+\.\d+)', open(path).read())
        if m:
            return m.group(1)
    return None


def test_lists_backends_and_exits_zero():
    lines = backend_info()
    assert lines[0] in ("backends: cpu", "backends: cpu cuda"), lines
    if lines[0] == "backends: cpu":
        assert lines[1].startswith("cuda: not built"), lines


def test_cuda_versions_devices_or_reason():
    info = backend_info()
    lines = [line for line in info if not line.startswith(("cudnn: ", "cuda graphs: "))]
    if "cuda" not in lines[0].split()[1:]:
        pytest.skip("llm-run built without CUDA")
    graphs = [line for line in info if line.startswith("cuda graphs: ")]
    assert len(graphs) == 1 and "--no-cuda-graph" in graphs[0], info
    built = re.fullmatch(rf"cuda built with: CUDA runtime ({VERSION}), cuBLASLt ({VERSION}), NCCL (not built|{VERSION})",
                         lines[1])
    assert built, lines[1]
    assert re.fullmatch(rf"cuda loaded: CUDA runtime ({VERSION}|none), cuBLASLt ({VERSION}|none), NCCL ({VERSION}|none)",
                        lines[2]), lines[2]
    assert re.fullmatch(rf"cuda driver: (none|supports CUDA {VERSION})", lines[3]), lines[3]
    nvcc = built_cuda_version()
    if nvcc:
        assert built.group(1) == nvcc, f"built with CUDA runtime {built.group(1)}, but nvcc was {nvcc}"
    m = re.fullmatch(r"cuda devices: (\d+)( \(no CUDA device: (.+)\))?", lines[4])
    assert m, lines[4]
    count = int(m.group(1))
    if count == 0:
        assert m.group(3), "no devices but no reason given"
        assert len(lines) == 5, lines
        if lines[3] == "cuda driver: none":  # no driver: the reason is CUDA's error for it
            assert "driver" in m.group(3).lower(), m.group(3)
    else:
        devices = lines[5:]
        assert len(devices) == count, lines
        for i, d in enumerate(devices):
            assert re.fullmatch(rf"  {i}: .+, sm_\d+, \d+ MiB", d), d
    smi = shutil.which("nvidia-smi")
    if smi:
        listed = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=60)
        if listed.returncode == 0:
            assert count == len([line for line in listed.stdout.splitlines() if line.startswith("GPU ")])
    elif not os.path.exists("/dev/nvidia0"):
        assert count == 0, "devices reported on a machine without /dev/nvidia0"


@pytest.mark.parametrize("args, message", [
    (["--comm", "gloo"], "--comm gloo: expected nccl, mpi or auto"),
    (["--comm", "nccl"], "--comm nccl: needs --backend cuda (the cpu backend uses MPI)"),
])
def test_comm_option_errors(tmp_path, args, message):
    """--comm picks the CUDA backend's collectives (NCCL, or staged over MPI); bad values are named."""
    proc = subprocess.run([LLM_RUN, str(tmp_path / "p.llmir"), "--weights", str(tmp_path / "w"),
                           "--data", str(tmp_path / "d")] + args, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert proc.stderr.strip() == "llm-run: error: " + message


CUDNN = rf"cudnn: (not built \(attention uses the built-in kernels\)|built with (?P<built>{VERSION}) \(frontend {VERSION}\), loaded (?P<loaded>.+))"


def test_cudnn_built_and_loaded_or_reason():
    lines = backend_info()
    if "cuda" not in lines[0].split()[1:]:
        pytest.skip("llm-run built without CUDA")
    cudnn = [line for line in lines if line.startswith("cudnn: ")]
    assert len(cudnn) == 1, lines
    m = re.fullmatch(CUDNN, cudnn[0])
    assert m, cudnn[0]
    if m.group("built") is None:
        return
    assert re.fullmatch(rf"{VERSION}|none: libcudnn.so.9 not loaded \(.+\)", m.group("loaded")), m.group("loaded")
    # A library that cannot load is named in the reason; the command still succeeds.
    missing = [line for line in backend_info({"LLMIR_CUDNN_LIBRARY": "/nonexistent/libcudnn.so.9"})
               if line.startswith("cudnn: ")]
    assert re.fullmatch(CUDNN, missing[0]).group("loaded").startswith("none: libcudnn.so.9 not loaded (/nonexistent/"), missing
