#!/usr/bin/env python3
"""test_weightfiles_ref.py - our weight-file readers and writer against the
reference Python packages.

  * files written by safetensors.torch.save_file and safetensors.numpy.save_file
    (F32, F16, BF16, F64, metadata) are read by our reader with identical
    values; integer tensors are refused by name;
  * files written by our writer are read by safetensors.torch.load_file and
    safe_open with identical values and metadata;
  * Keras legacy HDF5 files written by h5py exactly as Keras'
    save_weights_to_hdf5_group writes them (the full VGG16 notop layout), and a
    tf.keras-style variant, are read with identical values.

Our side is reached through the helper tests/tensordump (built with
test_weightfiles).  Usage: test_weightfiles_ref.py --build BUILD --source SRC.
Exits 77 when a Python module is missing, 1 on any mismatch.
"""
import argparse
import json
import os
import struct
import subprocess
import sys
import tempfile

FAILURES = []


def fail(msg):
    FAILURES.append(msg)
    print("FAIL: " + msg, flush=True)


def run_tool(tool, *args):
    """Runs tensordump; returns (returncode, stdout, stderr)."""
    p = subprocess.run([tool, *args], capture_output=True, text=True, timeout=300)
    return p.returncode, p.stdout, p.stderr


def ours(tool, path, np):
    """Our reader's view of path: (format, metadata, [(name, array)])."""
    rc, out, err = run_tool(tool, path)
    if rc != 0:
        raise RuntimeError(f"tensordump {path} failed: {err.strip()}")
    doc = json.loads(out)
    tensors = []
    for t in doc["tensors"]:
        a = np.frombuffer(bytes.fromhex(t["data"]), dtype="<f4")
        tensors.append((t["name"], a.reshape([int(d) for d in t["shape"]])))
    return doc["format"], doc["metadata"], tensors


def same(np, got, want):
    """Bitwise float32 equality (any NaN matches any NaN)."""
    got = np.ascontiguousarray(got, dtype=np.float32)
    want = np.ascontiguousarray(want, dtype=np.float32)
    if got.shape != want.shape:
        return f"shape {list(got.shape)} != {list(want.shape)}"
    g, w = got.reshape(-1), want.reshape(-1)
    ok = (g.view(np.uint32) == w.view(np.uint32)) | (np.isnan(g) & np.isnan(w))
    if not ok.all():
        i = int(np.argmin(ok))
        return f"{int((~ok).sum())} of {ok.size} values differ, first at {i}: {g[i]!r} != {w[i]!r}"
    return None


def compare(np, what, got_list, want):
    """got_list: [(name, array)] from our reader; want: {name: float32 array}."""
    got = dict(got_list)
    if len(got) != len(got_list):
        fail(f"{what}: duplicate tensor names in our output")
    if set(got) != set(want):
        fail(f"{what}: tensors {sorted(got)} != expected {sorted(want)}")
        return
    for name, w in want.items():
        why = same(np, got[name], w)
        if why:
            fail(f"{what}: tensor {name}: {why}")


def header_of(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        return n, json.loads(f.read(n).decode("utf-8"))


def special_values(np, n, seed):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal(n).astype(np.float32)
    specials = [0.0, -0.0, np.inf, -np.inf, np.nan, 1e-40, -1e-45, 3.4028235e38, 65504.0, 6e-8]
    a[: len(specials)] = np.array(specials, dtype=np.float32)
    return a


def check_safetensors_torch(np, torch, st_torch, tool, tmp):
    rng = np.random.default_rng(1)
    tensors = {
        "features.0.weight": torch.from_numpy(rng.standard_normal((64, 3, 3, 3)).astype(np.float32)),
        "features.0.bias": torch.from_numpy(special_values(np, 64, 2)),
        "features.2.weight": torch.from_numpy(rng.standard_normal((64, 64, 3, 3)).astype(np.float32)),
        "half": torch.from_numpy(special_values(np, 40, 3)).half().reshape(5, 8),
        "bf16": torch.from_numpy(special_values(np, 33, 4)).bfloat16(),
        "double": torch.from_numpy(rng.standard_normal((7, 3)) * 1e3),
        "scalar": torch.tensor(2.5),
        "empty": torch.zeros((0, 3)),
    }
    meta = {"format": "pt", "classes": '["caf\u00e9", "a\\"b"]', "note": "line1\nline2 \u2713"}
    path = os.path.join(tmp, "torch.safetensors")
    st_torch.save_file(tensors, path, metadata=meta)

    fmt, got_meta, got = ours(tool, path, np)
    if fmt != "safetensors":
        fail(f"torch file detected as {fmt}")
    if got_meta != meta:
        fail(f"torch file: metadata {got_meta} != {meta}")
    compare(np, "safetensors.torch file", got, {k: v.float().numpy() for k, v in tensors.items()})
    # Our reader lists tensors in data order.
    _, hdr = header_of(path)
    by_offset = sorted((v["data_offsets"], k) for k, v in hdr.items() if k != "__metadata__")
    if [k for _, k in by_offset] != [n for n, _ in got]:
        fail("torch file: our tensor order is not the data order")

    # Integer and bool tensors are refused, naming the tensor and dtype.
    for name, t, dt in [("bn.num_batches_tracked", torch.tensor(5), "I64"),
                        ("mask", torch.tensor([True, False]), "BOOL"),
                        ("idx", torch.arange(4, dtype=torch.int32), "I32")]:
        p = os.path.join(tmp, f"int_{dt}.safetensors")
        st_torch.save_file({"w": torch.ones(3), name: t}, p)
        rc, _, err = run_tool(tool, p)
        if rc != 1 or f"tensor {name} has dtype {dt}" not in err or "EFORMAT" not in err:
            fail(f"{dt} tensor not refused properly: rc {rc}, stderr {err.strip()!r}")


def check_safetensors_numpy(np, st_numpy, tool, tmp):
    rng = np.random.default_rng(5)
    arrays = {
        "classifier.0.weight": rng.standard_normal((16, 32)).astype(np.float32),
        "classifier.0.bias": special_values(np, 16, 6),
        "f64": rng.standard_normal((2, 3, 4)) * 1e-3,
        "big64": np.array([1e300, -1e300, 1e-300, 16777217.0], dtype=np.float64),
    }
    meta = {"source": "numpy", "empty": ""}
    path = os.path.join(tmp, "numpy.safetensors")
    with np.errstate(over="ignore"):  # F16 and F32 overflow to infinity, as in ours
        arrays["f16"] = special_values(np, 20, 7).astype(np.float16)
        want = {k: v.astype(np.float32) for k, v in arrays.items()}
    st_numpy.save_file(arrays, path, metadata=meta)
    _, got_meta, got = ours(tool, path, np)
    if got_meta != meta:
        fail(f"numpy file: metadata {got_meta} != {meta}")
    compare(np, "safetensors.numpy file", got, want)


def check_our_writer(np, torch, st_torch, st_numpy, safe_open, tool, tmp):
    rng = np.random.default_rng(9)
    order = ["zeta.weight", "alpha.bias", "head.fc.weight", "scalar", "empty", "f16"]
    arrays = {
        "zeta.weight": rng.standard_normal((4, 3, 3, 3)).astype(np.float32),
        "alpha.bias": special_values(np, 12, 10),
        "head.fc.weight": rng.standard_normal((10, 24)).astype(np.float32),
        "scalar": np.array(-0.0, dtype=np.float32),
        "empty": np.zeros((2, 0), dtype=np.float32),
    }
    with np.errstate(over="ignore"):
        arrays["f16"] = special_values(np, 12, 11).astype(np.float16)
    meta = {"vggtune.format": "1", "classes": '["cat","dog","caf\u00e9"]',
            "spec": '{"mode": "finetune", "lr": 0.001}', "tab\tnewline\n": "\"quoted\" \\ /"}
    src = os.path.join(tmp, "src.safetensors")
    st_numpy.save_file(arrays, src, metadata=meta)
    _, _, src_view = ours(tool, src, np)
    out = os.path.join(tmp, "ours.safetensors")
    rc, _, err = run_tool(tool, "--to-safetensors", src, out)
    if rc != 0:
        fail(f"our writer failed: {err.strip()}")
        return
    want = {k: v.astype(np.float32) for k, v in arrays.items()}

    loaded = st_torch.load_file(out)
    for k, v in loaded.items():
        if v.dtype != torch.float32:
            fail(f"our file: {k} is {v.dtype}, not float32")
    compare(np, "our file via safetensors.torch.load_file",
            [(k, v.numpy()) for k, v in loaded.items()], want)
    compare(np, "our file via safetensors.numpy.load_file",
            list(st_numpy.load_file(out).items()), want)
    with safe_open(out, framework="pt") as f:
        if f.metadata() != meta:
            fail(f"our file: safe_open metadata {f.metadata()} != {meta}")
        if sorted(f.keys()) != sorted(want):
            fail(f"our file: safe_open keys {sorted(f.keys())}")
        for k in f.keys():
            why = same(np, f.get_tensor(k).numpy(), want[k])
            if why:
                fail(f"our file via safe_open: tensor {k}: {why}")

    # Layout: header padded with spaces to a multiple of 8, tensors in
    # insertion order (our reader's order of the source) with contiguous
    # offsets, F32 only, __metadata__ present.
    n, hdr = header_of(out)
    with open(out, "rb") as f:
        raw = f.read()
    if n % 8 != 0:
        fail(f"our file: header length {n} is not a multiple of 8")
    text = raw[8:8 + n].decode("utf-8")
    if text.rstrip(" ") != text.rstrip() or len(text) - len(text.rstrip(" ")) >= 8:
        fail(f"our file: header padding is not 0-7 spaces: {text[-10:]!r}")
    names = [k for k in hdr if k != "__metadata__"]
    if names != [n_ for n_, _ in src_view]:
        fail(f"our file: header order {names} != insertion order {[n_ for n_, _ in src_view]}")
    off = 0
    for k in names:
        e = hdr[k]
        size = int(np.prod(e["shape"], dtype=np.int64)) * 4
        if e["dtype"] != "F32" or e["data_offsets"] != [off, off + size]:
            fail(f"our file: entry {k} = {e}, expected F32 at [{off}, {off + size}]")
        off += size
    if len(raw) != 8 + n + off:
        fail(f"our file: size {len(raw)} != 8 + {n} + {off}")
    if set(order) != set(names):
        fail("our file: tensor names changed")


# The Keras VGG16 "notop" layout (WEIGHTS.md): layer, kernel shape or None.
VGG_CONVS = [(1, 1, 3, 64), (1, 2, 64, 64), (2, 1, 64, 128), (2, 2, 128, 128),
             (3, 1, 128, 256), (3, 2, 256, 256), (3, 3, 256, 256),
             (4, 1, 256, 512), (4, 2, 512, 512), (4, 3, 512, 512),
             (5, 1, 512, 512), (5, 2, 512, 512), (5, 3, 512, 512)]


def keras_layers(shrink):
    layers = [("input_1", [])]
    for b in range(1, 6):
        for blk, c, cin, cout in VGG_CONVS:
            if blk == b:
                cin = cin if cin == 3 else cin // shrink
                layers.append((f"block{b}_conv{c}", [(3, 3, cin, cout // shrink), (cout // shrink,)]))
        layers.append((f"block{b}_pool", []))
    return layers


def check_keras_h5(np, h5py, tool, tmp, fixed):
    """As Keras' save_weights_to_hdf5_group writes: attributes are lists of
    byte strings, empty lists for weightless layers, datasets created with
    shape and dtype then assigned.  h5py 2 (which wrote the published VGG16
    files) stored such lists as fixed-length byte strings; h5py 3 stores a
    plain list as variable-length strings and a numpy 'S' array (what Keras
    passes when it splits an attribute) as fixed-length.  fixed=True writes
    the full-size VGG16 notop file with numpy 'S' arrays; fixed=False the
    literal list form, at 1/16 of the channels."""
    rng = np.random.default_rng(12)
    name = "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5" if fixed else "vgg16_list.h5"
    path = os.path.join(tmp, name)
    names = (lambda xs: np.array(xs)) if fixed else (lambda xs: xs)
    want, order = {}, []
    with h5py.File(path, "w") as f:
        layers = keras_layers(1 if fixed else 16)
        f.attrs["layer_names"] = names([n.encode("utf8") for n, _ in layers])
        f.attrs["backend"] = "tensorflow".encode("utf8")
        f.attrs["keras_version"] = "2.1.5".encode("utf8")
        for lname, shapes in layers:
            g = f.create_group(lname)
            wnames = [f"{lname}_{'W' if len(s) == 4 else 'b'}_1:0" for s in shapes]
            g.attrs["weight_names"] = names([n.encode("utf8") for n in wnames])
            for wn, s in zip(wnames, shapes):
                val = (rng.standard_normal(s) * 0.05).astype(np.float32)
                ds = g.create_dataset(wn, val.shape, dtype=val.dtype)
                ds[:] = val
                want[f"{lname}/{wn}"] = val
                order.append(f"{lname}/{wn}")
    with h5py.File(path, "r") as f:
        is_vlen = f.attrs.get_id("layer_names").get_type().is_variable_str()
        if is_vlen == fixed:
            fail(f"{name}: h5py stored layer_names {'variable' if is_vlen else 'fixed'}-length")
    fmt, meta, got = ours(tool, path, np)
    if fmt != "keras_h5":
        fail(f"{name}: detected as {fmt}")
    if [n for n, _ in got] != order:
        fail(f"{name}: order {[n for n, _ in got][:4]}... != {order[:4]}...")
    if len(got) != 26:
        fail(f"{name}: {len(got)} tensors, expected 26")
    if fixed and sum(a.size for _, a in got) != 14714688:
        fail(f"{name}: parameter count is not 14 714 688")
    compare(np, name, got, want)

    # Through our writer, into torch.
    out = os.path.join(tmp, name + ".safetensors")
    rc, _, err = run_tool(tool, "--to-safetensors", path, out)
    if rc != 0:
        fail(f"{name} -> safetensors failed: {err.strip()}")
    else:
        import safetensors.torch as st_torch
        loaded = st_torch.load_file(out)
        compare(np, name + " rewritten by us, via torch",
                [(k, v.numpy()) for k, v in loaded.items()], want)


def check_tf_keras_h5(np, h5py, tool, tmp):
    """tf.keras-style names (a subgroup per layer), variable-length strings,
    split attributes, float64 and float16 data."""
    rng = np.random.default_rng(13)
    path = os.path.join(tmp, "tfkeras.h5")
    layers = [("input_1", []), ("block1_conv1", [(3, 3, 3, 8), (8,)]), ("block1_pool", []),
              ("fc1", [(12, 5), (5,)]), ("predictions", [(5, 3), (3,)])]
    dtypes = {"block1_conv1": np.float64, "fc1": np.float16, "predictions": np.float32}
    want, order = {}, []
    vlen = h5py.string_dtype(encoding="utf-8")
    with h5py.File(path, "w") as f:
        names = [n for n, _ in layers]
        f.attrs.create("layer_names0", names[:3], dtype=vlen)
        f.attrs.create("layer_names1", names[3:], dtype=vlen)
        for lname, shapes in layers:
            g = f.create_group(lname)
            wnames = [f"{lname}/{'kernel' if len(s) > 1 else 'bias'}:0" for s in shapes]
            if not wnames:
                g.attrs["weight_names"] = np.array([], dtype="S1")
            elif lname == "fc1":
                g.attrs.create("weight_names0", wnames[:1], dtype=vlen)
                g.attrs.create("weight_names1", wnames[1:], dtype=vlen)
            else:
                g.attrs.create("weight_names", wnames, dtype=vlen)
            for wn, s in zip(wnames, shapes):
                val = rng.standard_normal(s).astype(dtypes[lname])
                g.create_dataset(wn, data=val)
                want[f"{lname}/{wn}"] = val.astype(np.float32)
                order.append(f"{lname}/{wn}")
    _, _, got = ours(tool, path, np)
    if [n for n, _ in got] != order:
        fail(f"tf.keras file: order {[n for n, _ in got]} != {order}")
    compare(np, "tf.keras h5py file", got, want)

    # An integer dataset is refused by name.
    bad = os.path.join(tmp, "int.h5")
    with h5py.File(bad, "w") as f:
        f.attrs["layer_names"] = [b"dense_1"]
        g = f.create_group("dense_1")
        g.attrs["weight_names"] = [b"dense_1_W_1:0"]
        g.create_dataset("dense_1_W_1:0", data=np.arange(6, dtype=np.int64).reshape(2, 3))
    rc, _, err = run_tool(tool, bad)
    if rc != 1 or "weight dense_1_W_1:0 holds integer data" not in err:
        fail(f"int64 HDF5 dataset not refused properly: rc {rc}, stderr {err.strip()!r}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", required=True)
    ap.add_argument("--source")
    args = ap.parse_args()
    try:
        import numpy as np
        import torch
        import h5py
        import safetensors.numpy as st_numpy
        import safetensors.torch as st_torch
        from safetensors import safe_open
    except ImportError as e:
        print(f"SKIP: a Python module this test needs is missing: {e}")
        return 77

    tool = os.path.join(args.build, "tests", "tensordump")
    if not os.access(tool, os.X_OK):
        print(f"FAIL: {tool} is not built (it is built with the test_weightfiles target)")
        return 1

    with tempfile.TemporaryDirectory(prefix="vt-wf-") as tmp:
        steps = [
            ("safetensors.torch -> our reader",
             lambda: check_safetensors_torch(np, torch, st_torch, tool, tmp)),
            ("safetensors.numpy -> our reader",
             lambda: check_safetensors_numpy(np, st_numpy, tool, tmp)),
            ("our writer -> safetensors.torch/numpy/safe_open",
             lambda: check_our_writer(np, torch, st_torch, st_numpy, safe_open, tool, tmp)),
            ("Keras HDF5, VGG16 notop, fixed-length names -> our reader",
             lambda: check_keras_h5(np, h5py, tool, tmp, True)),
            ("Keras HDF5, names as plain lists (h5py 3: vlen) -> our reader",
             lambda: check_keras_h5(np, h5py, tool, tmp, False)),
            ("tf.keras-style HDF5 -> our reader",
             lambda: check_tf_keras_h5(np, h5py, tool, tmp)),
        ]
        for name, fn in steps:
            before = len(FAILURES)
            try:
                fn()
            except Exception as e:  # a crash of ours or theirs is a failure
                fail(f"{name}: {type(e).__name__}: {e}")
            print(f"{'ok  ' if len(FAILURES) == before else 'FAIL'} {name}", flush=True)

    if FAILURES:
        print(f"{len(FAILURES)} mismatch(es)")
        return 1
    print("all reference checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
