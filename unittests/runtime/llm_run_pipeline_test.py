"""llm-run with a three-stage pipeline program (hand-written JSON, converted by
flatc): stage 0 binds input_ids and sends parameter p, the middle stage binds
no input and forwards it, the last stage binds labels and outputs loss = p[0]
and logits = p. Rank 0 must print the loss and write the logits it does not
compute, checkpoints must hold p, and a NaN weight must stop every rank.

usage: llm_run_pipeline_test.py FLATC SCHEMA PROGRAM.json LLM-RUN WORKDIR MPIEXEC [MPI FLAGS...]
Standard library only (writes safetensors/npy by hand)."""
import json
import os
import struct
import subprocess
import sys

flatc, schema, program_json, llm_run_exe, work, mpiexec, *mpi_flags = sys.argv[1:]
os.makedirs(work, exist_ok=True)
subprocess.run([flatc, "-b", "-o", work, schema, program_json], check=True)
program = os.path.join(work, os.path.splitext(os.path.basename(program_json))[0] + ".llmir")
assert os.path.exists(program), program


def append_checksum(path):
    """The program file's trailer (runtime/include/llmir/runtime/ProgramVersion.h):
    b"LLMRSUM1", then FNV-1a 64 of the image, little-endian."""
    data = open(path, "rb").read()
    h = 0xCBF29CE484222325
    for byte in data:
        h = ((h ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    with open(path, "ab") as f:
        f.write(b"LLMRSUM1" + struct.pack("<Q", h))


append_checksum(program)


def write_safetensors(path, name, values):
    header = json.dumps({name: {"dtype": "F32", "shape": [len(values)],
                                "data_offsets": [0, 4 * len(values)]}}).encode()
    header += b" " * (-len(header) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(header)) + header + struct.pack(f"<{len(values)}f", *values))


def read_npy_f32(path):
    data = open(path, "rb").read()
    assert data[:6] == b"\x93NUMPY", path
    hlen = struct.unpack("<H", data[8:10])[0]
    header, body = data[10:10 + hlen].decode(), data[10 + hlen:]
    assert "'<f4'" in header, header
    return header, list(struct.unpack(f"<{len(body) // 4}f", body))


def write_tokens(path, n):
    header = "{'descr': '<i8', 'fortran_order': False, 'shape': (%d,), }" % n
    header += " " * (-(10 + len(header) + 1) % 64) + "\n"
    with open(path, "wb") as f:
        f.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode() +
                struct.pack(f"<{n}q", *[i % 8 for i in range(n)]))


weights, nan_weights, tokens = (os.path.join(work, n) for n in
                                ("w.safetensors", "nan.safetensors", "t.npy"))
write_safetensors(weights, "p", [2.5, 1.0, 2.0, 3.0])
write_safetensors(nan_weights, "p", [float("nan"), 1.0, 2.0, 3.0])
write_tokens(tokens, 100)
logits, ck = os.path.join(work, "logits.npy"), os.path.join(work, "ck")
for stale in (logits, os.path.join(ck, "checkpoint.safetensors")):
    if os.path.exists(stale):
        os.remove(stale)


def llm_run(*args):
    cmd = [mpiexec, *mpi_flags, "-np", "3", llm_run_exe, program, "--data", tokens,
           "--timeout", "20", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=90)


failures = []
res = llm_run("--weights", weights, "--steps", "2", "--eval", "--logits-out", logits,
              "--save-checkpoint", ck)
if res.returncode != 0 or res.stderr.count("| loss 2.500000 |") != 2:
    failures.append("eval run: rc %d, stderr:\n%s" % (res.returncode, res.stderr))
else:
    header, values = read_npy_f32(logits)
    if "(1, 1, 4)" not in header or values != [2.5, 1.0, 2.0, 3.0]:
        failures.append("logits: %s %s" % (header, values))
    data = open(os.path.join(ck, "checkpoint.safetensors"), "rb").read()
    hlen = struct.unpack("<Q", data[:8])[0]
    if list(struct.unpack("<4f", data[8 + hlen:8 + hlen + 16])) != [2.5, 1.0, 2.0, 3.0]:
        failures.append("checkpoint does not hold p")
# A NaN weight is refused on load by both stages holding p (ranks 0 and 2):
# the ranks agree, rank 0 prints the error once, and every rank exits
# without MPI_Abort.
res = llm_run("--weights", nan_weights, "--steps", "3")
if (res.returncode == 0 or res.stderr.count("error:") != 1 or "MPI_ABORT" in res.stderr or
        "rank 0: " not in res.stderr or "tensor 'p' has a non-finite value (nan)" not in res.stderr):
    failures.append("NaN run: rc %d, stderr:\n%s" % (res.returncode, res.stderr))
for f in failures:
    print("FAILED:", f)
print("llm-run pipeline test:", "FAILED" if failures else "ALL OK")
sys.exit(1 if failures else 0)
