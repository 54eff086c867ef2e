import json
import os
import struct

import numpy as np
import pytest

from llmir import safetensors as st


def _all_dtypes():
    rng = np.random.default_rng(0)
    return {
        "f32": rng.standard_normal((3, 4)).astype(np.float32),
        "f16": rng.standard_normal((5,)).astype(np.float16),
        "f64": rng.standard_normal((2, 2)),
        "i32": rng.integers(-100, 100, size=(2, 3), dtype=np.int32),
        "i64": rng.integers(-(2**40), 2**40, size=(4,), dtype=np.int64),
        "u8": np.arange(7, dtype=np.uint8),
        "bool": np.array([True, False, True]),
        "scalar": np.array(3.5, dtype=np.float32),
        "empty": np.zeros((0, 3), dtype=np.float32),
        "bf16": st.BF16.from_float(np.array([[1.0, -2.5], [3.140625, 0.0]], dtype=np.float32)),
    }


def test_round_trip_all_dtypes(tmp_path):
    t = _all_dtypes()
    path = tmp_path / "a.safetensors"
    st.save_file(t, path, metadata={"format": "pt", "note": "x"})
    back = st.load_file(path)
    assert set(back) == set(t)
    for name, v in t.items():
        if isinstance(v, st.BF16):
            np.testing.assert_array_equal(back[name], v.to_float32())
            assert back[name].dtype == np.float32
        else:
            assert back[name].dtype == v.dtype, name
            assert back[name].shape == v.shape, name
            np.testing.assert_array_equal(back[name], v)
    raw = st.load_file(path, bf16_as="uint16")
    np.testing.assert_array_equal(raw["bf16"], t["bf16"].bits)
    infos, meta = st.read_header(path)
    assert meta == {"format": "pt", "note": "x"}
    assert infos["bf16"].dtype == "BF16" and infos["bf16"].shape == (2, 2)
    assert infos["scalar"].shape == () and infos["empty"].shape == (0, 3)
    # Loaded arrays are writable copies.
    back["f32"][0, 0] = 1.0


def test_layout_sorted_packed_and_padded(tmp_path):
    path = tmp_path / "b.safetensors"
    st.save_file({"z": np.ones(3, np.float32), "a": np.arange(2, dtype=np.int64), "m": np.zeros(1, np.float16)}, path)
    data = path.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    assert n % 8 == 0
    header = json.loads(data[8 : 8 + n])
    names = [k for k in header if k != "__metadata__"]
    assert names == ["a", "m", "z"]
    assert header["a"]["data_offsets"] == [0, 16]
    assert header["m"]["data_offsets"] == [16, 18]
    assert header["z"]["data_offsets"] == [18, 30]
    assert len(data) == 8 + n + 30
    # Little-endian raw data.
    assert data[8 + n : 8 + n + 16] == struct.pack("<2q", 0, 1)


def test_exact_bytes_of_small_file():
    data = st.save({"a": np.array([1.0, 2.0], dtype=np.float32)})
    header = b'{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}'
    header += b" " * ((8 - len(header) % 8) % 8)
    assert data == struct.pack("<Q", len(header)) + header + struct.pack("<2f", 1.0, 2.0)


def test_big_endian_input_is_written_little_endian():
    a = np.arange(4, dtype=">f4")
    back = st.load(st.save({"x": a}))
    assert back["x"].dtype == np.float32
    np.testing.assert_array_equal(back["x"], np.arange(4, dtype=np.float32))


def test_atomic_write_leaves_no_temp_files(tmp_path):
    path = tmp_path / "c.safetensors"
    st.save_file({"x": np.ones(2, np.float32)}, path)
    st.save_file({"x": np.zeros(2, np.float32)}, path)  # overwrite
    assert sorted(os.listdir(tmp_path)) == ["c.safetensors"]
    np.testing.assert_array_equal(st.load_file(path)["x"], np.zeros(2))
    with pytest.raises(TypeError):
        st.save_file({"x": np.array(["s"])}, path)  # unsupported dtype: old file intact
    assert sorted(os.listdir(tmp_path)) == ["c.safetensors"]
    np.testing.assert_array_equal(st.load_file(path)["x"], np.zeros(2))


def test_bf16_rounding_matches_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    x = np.concatenate([
        rng.standard_normal(1000).astype(np.float32) * 100,
        np.array([1.0 + 2**-8, 1.0 + 3 * 2**-8, -1.0 - 2**-8, np.inf, -np.inf, 0.0, -0.0, 3.4e38, 1e-40],
                 dtype=np.float32),
    ])
    bits = st.float32_to_bf16_bits(x)
    ref = torch.from_numpy(x).to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
    np.testing.assert_array_equal(bits, ref)
    assert st.float32_to_bf16_bits(np.array([1.0 + 2**-8], np.float32))[0] == 0x3F80  # tie -> even
    assert np.isnan(st.bf16_bits_to_float32(st.float32_to_bf16_bits(np.array([np.nan], np.float32))))[0]


def test_torch_tensors_and_load_torch(tmp_path):
    torch = pytest.importorskip("torch")
    path = tmp_path / "t.safetensors"
    t = {"w": torch.randn(3, 2), "b": torch.randn(4).to(torch.bfloat16), "i": torch.arange(3, dtype=torch.int32)}
    st.save_file(t, path)
    back = st.load_torch(path)
    assert back["b"].dtype == torch.bfloat16
    for k in t:
        assert torch.equal(back[k], t[k]), k
    f32 = st.load_torch(path, dtype=torch.float32)
    assert f32["b"].dtype == torch.float32


def test_save_rejects_bad_names():
    with pytest.raises(ValueError):
        st.save({"__metadata__": np.zeros(1, np.float32)})
    with pytest.raises(TypeError):
        st.save({"x": [1, 2]})
    with pytest.raises(TypeError):
        st.save({"x": np.zeros(1, np.float32)}, metadata={"k": 1})


# ---------------------------------------------------------------------------------------------- corrupt files


def _file(header, data=b"", pad=True):
    h = json.dumps(header).encode() if not isinstance(header, bytes) else header
    return struct.pack("<Q", len(h)) + h + data


GOOD_ENTRY = {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}

CORRUPT = {
    "empty": (b"", "at least 8"),
    "short": (b"\x01\x02\x03", "at least 8"),
    "header past end": (struct.pack("<Q", 1000) + b"{}", "past the end"),
    "huge header": (struct.pack("<Q", 2**62) + b"{}", "exceeds the limit"),
    "not json": (_file(b"{not json}"), "not valid JSON"),
    "not utf8": (_file(b"{\xff\xfe}"), "UTF-8"),
    "not object start": (_file(b"[1, 2]"), "does not start"),
    "unknown dtype": (_file({"a": {**GOOD_ENTRY, "dtype": "F8"}}, b"\0" * 8), "unknown dtype"),
    "missing field": (_file({"a": {"dtype": "F32", "shape": [2]}}, b"\0" * 8), "missing field"),
    "extra field": (_file({"a": {**GOOD_ENTRY, "x": 1}}, b"\0" * 8), "unknown field"),
    "negative shape": (_file({"a": {**GOOD_ENTRY, "shape": [-2]}}, b"\0" * 8), "shape"),
    "bool shape": (_file({"a": {**GOOD_ENTRY, "shape": [True, 2]}}, b"\0" * 8), "shape"),
    "bad offsets": (_file({"a": {**GOOD_ENTRY, "data_offsets": [0]}}, b"\0" * 8), "data_offsets"),
    "begin > end": (_file({"a": {**GOOD_ENTRY, "data_offsets": [8, 0]}}, b"\0" * 8), "begin"),
    "size mismatch": (_file({"a": {**GOOD_ENTRY, "shape": [3]}}, b"\0" * 8), "needs 12 bytes"),
    "truncated data": (_file({"a": GOOD_ENTRY}, b"\0" * 5), "exceeds the data section"),
    "trailing garbage": (_file({"a": GOOD_ENTRY}, b"\0" * 9), "trailing garbage"),
    "gap": (_file({"a": {**GOOD_ENTRY, "data_offsets": [4, 12]}}, b"\0" * 12), "gap"),
    "overlap": (_file({"a": GOOD_ENTRY, "b": {**GOOD_ENTRY, "data_offsets": [4, 12]}}, b"\0" * 12), "overlaps"),
    "duplicate": (_file(b'{"a":' + json.dumps(GOOD_ENTRY).encode() + b',"a":'
                        + json.dumps(GOOD_ENTRY).encode() + b"}", b"\0" * 8), "duplicate"),
    "bad metadata": (_file({"__metadata__": {"k": 1}}), "__metadata__"),
    "entry not object": (_file({"a": [1, 2]}), "must be an object"),
}


@pytest.mark.parametrize("case", sorted(CORRUPT))
def test_corrupt_files_raise_value_error(tmp_path, case):
    data, msg = CORRUPT[case]
    path = tmp_path / "bad.safetensors"
    path.write_bytes(data)
    with pytest.raises(ValueError, match=msg) as e:
        st.load_file(path)
    assert str(path) in str(e.value)
    with pytest.raises(ValueError):
        st.read_header(path)


def test_truncating_a_real_file_always_raises(tmp_path):
    data = st.save(_all_dtypes(), metadata={"a": "b"})
    for cut in range(0, len(data), 7):
        with pytest.raises(ValueError):
            st.load(data[:cut])


def test_empty_file_with_no_tensors_is_valid():
    assert st.load(st.save({})) == {}
    assert st.load(_file({"__metadata__": {"k": "v"}})) == {}
