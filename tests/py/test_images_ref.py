"""Our image decoding and resizing against the references users know.

Runs tests/imgdump (vt_image_load to a size, raw RGB on stdout) on files
written here with PIL, and on vt-gendata output, and checks:
  - PNG decode == PIL's Image.convert("RGB"), exactly;
  - baseline and progressive JPEG decode at native size == PIL's decode
    (both use libjpeg-turbo with the accurate integer IDCT and fancy
    upsampling, so exact is expected; at most 1 level is tolerated and
    reported);
  - a JPEG with stray bytes before its EOI marker (a harmless libjpeg
    warning) decodes as PIL decodes it, and as the intact file;
  - a JPEG decoded at half size == PIL's draft() decode at scale 1/2;
  - resize == torch.nn.functional.interpolate(mode="bilinear",
    align_corners=False) on the float image, rounded half up, within 1 level
    and off by one in at most 1% of values (float rounding at halves).

Usage: test_images_ref.py --build BUILD_DIR --source SRC_DIR
Exits 77 (skip) when numpy, torch or PIL is missing.
"""
import argparse
import os
import subprocess
import sys
import tempfile

try:
    import numpy as np
    import torch
    import torch.nn.functional as F
    from PIL import Image
except ImportError as e:  # pragma: no cover - depends on the machine
    print(f"SKIP images_ref: Python module missing ({e.name}); "
          "needs numpy, torch and PIL")
    sys.exit(77)

FAILS = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        FAILS.append(what)


def ours(imgdump, path, w=0, h=0):
    """Our decode of path at (w, h), or at its own size when 0."""
    r = subprocess.run([imgdump, path, str(w), str(h)], capture_output=True)
    if r.returncode != 0:
        raise RuntimeError(f"imgdump {path}: {r.stderr.decode().strip()}")
    if w == 0:
        with Image.open(path) as im:
            w, h = im.size
    return np.frombuffer(r.stdout, np.uint8).reshape(h, w, 3)


def pil_rgb(path):
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def torch_resize(img, w, h):
    x = torch.from_numpy(img.astype(np.float32)).permute(2, 0, 1)[None]
    y = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False)
    y = torch.floor(y + 0.5).clamp(0, 255)
    return y[0].permute(1, 2, 0).numpy().astype(np.uint8)


def diff(a, b):
    if a.shape != b.shape:
        return 999, a.size
    d = np.abs(a.astype(int) - b.astype(int))
    return int(d.max()), int((d > 0).sum())


def smooth_image(rng, w, h):
    """Smooth content plus noise: realistic for JPEG, rich for resize."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.zeros((h, w, 3), np.float32)
    for c in range(3):
        fx, fy, ph = rng.uniform(0.02, 0.2, 3)
        img[..., c] = 128 + 100 * np.sin(fx * x + ph * 10) * np.cos(fy * y + c)
    img += rng.normal(0, 12, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def write_pngs(rng, d):
    """One PNG per mode PIL writes; returns [(label, path)]."""
    out = []
    base = smooth_image(rng, 29, 17)
    rgba = np.dstack([base, rng.integers(0, 256, (17, 29), np.uint8)])
    gray = base[..., 0]
    images = {
        "RGB": Image.fromarray(base, "RGB"),
        "RGBA": Image.fromarray(rgba, "RGBA"),
        "L": Image.fromarray(gray, "L"),
        "LA": Image.fromarray(np.dstack([gray, 255 - gray]), "LA"),
        "1": Image.fromarray(gray > 128),
        "P": Image.fromarray(base, "RGB").quantize(colors=50),
        "P+transparency": Image.fromarray(base, "RGB").quantize(colors=16),
        "P 4-bit": Image.fromarray(base, "RGB").quantize(colors=9),
    }
    for label, im in images.items():
        path = os.path.join(d, label.replace(" ", "_").replace("+", "_") + ".png")
        kw = {"transparency": 3} if label == "P+transparency" else {}
        if label == "P 4-bit":
            kw["bits"] = 4
        im.save(path, **kw)
        out.append((label, path))
    # 16-bit grayscale: PIL reads it as I;16 and its convert("RGB") clips
    # values to 255 instead of scaling, so it is no reference there; the C
    # test checks 16-bit PNGs (high byte kept) directly.
    return out


def write_jpegs(rng, d):
    out = []
    for label, w, h, kw in [
        ("4:2:0 q90", 64, 48, {"quality": 90}),
        ("4:4:4 q95", 40, 30, {"quality": 95, "subsampling": 0}),
        ("4:2:2 q85", 33, 21, {"quality": 85, "subsampling": 1}),
        ("4:2:0 odd size", 37, 23, {"quality": 90, "subsampling": 2}),
        ("progressive", 64, 48, {"quality": 90, "progressive": True}),
        ("optimized", 50, 50, {"quality": 75, "optimize": True}),
    ]:
        path = os.path.join(d, label.replace(" ", "_").replace(":", "") + ".jpg")
        Image.fromarray(smooth_image(rng, w, h)).save(path, **kw)
        out.append((label, path))
    path = os.path.join(d, "gray.jpg")
    Image.fromarray(smooth_image(rng, 30, 20)[..., 1], "L").save(path, quality=90)
    out.append(("grayscale", path))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", required=True)
    ap.add_argument("--source")
    args = ap.parse_args()
    imgdump = os.path.join(args.build, "tests", "imgdump")
    gendata = os.path.join(args.build, "tools", "vt-gendata")
    for exe in (imgdump, gendata):
        if not os.access(exe, os.X_OK):
            print(f"FAIL {exe} is not built")
            return 1
    rng = np.random.default_rng(1234)

    with tempfile.TemporaryDirectory() as d:
        for label, path in write_pngs(rng, d):
            m, n = diff(ours(imgdump, path), pil_rgb(path))
            check(m == 0, f"PNG {label}: equals PIL convert('RGB') (max diff {m}, {n} values)")

        jpegs = write_jpegs(rng, d)
        for label, path in jpegs:
            m, n = diff(ours(imgdump, path), pil_rgb(path))
            note = "exact" if m == 0 else f"max diff {m} in {n} values"
            check(m <= 1, f"JPEG {label}: equals PIL's decode ({note})")

        # Stray bytes before EOI, as some cameras and editors write them
        # (libjpeg: "Corrupt JPEG data: N extraneous bytes before marker
        # 0xd9"): decoded as PIL decodes them, and as the intact file.
        label, path = jpegs[0]
        with open(path, "rb") as f:
            data = f.read()
        stray = os.path.join(d, "stray.jpg")
        with open(stray, "wb") as f:
            f.write(data[:-2] + bytes(8) + data[-2:])
        got = ours(imgdump, stray)
        m, n = diff(got, pil_rgb(stray))
        check(data.endswith(b"\xff\xd9") and m <= 1 and np.array_equal(got, ours(imgdump, path)),
              f"JPEG {label} with stray bytes before EOI: equals PIL's decode (max diff {m}) "
              "and the intact file's")

        # DCT scaling: 1/2 chosen for exactly half the size, as PIL's draft.
        path = os.path.join(d, "big.jpg")
        Image.fromarray(smooth_image(rng, 400, 300)).save(path, quality=90)
        with Image.open(path) as im:
            im.draft("RGB", (200, 150))
            ref = np.asarray(im.convert("RGB"))
        check(ref.shape == (150, 200, 3), f"PIL draft gave {ref.shape[1]}x{ref.shape[0]}")
        m, n = diff(ours(imgdump, path, 200, 150), ref)
        check(m <= 1, f"JPEG 400x300 at 1/2 scale: equals PIL draft (max diff {m}, {n} values)")

        # Resize: PNG input (decoded exactly), many ratios up and down.
        src = smooth_image(rng, 37, 23)
        path = os.path.join(d, "resize.png")
        Image.fromarray(src).save(path)
        worst, off = 0, 0
        sizes = [(64, 64), (32, 32), (24, 48), (5, 3), (37, 23), (100, 7), (1, 1),
                 (74, 46), (18, 11), (224, 224)]
        for w, h in sizes:
            m, n = diff(ours(imgdump, path, w, h), torch_resize(src, w, h))
            worst, off = max(worst, m), off + n
            # Off by one only where float rounding lands on the other side
            # of a half: rare, or the rounding rule differs.
            check(m <= 1 and n <= max(3, w * h * 3 // 100),
                  f"resize 37x23 -> {w}x{h}: torch bilinear within 1 "
                  f"(max diff {m}, {n} values off by one)")
        print(f"     resize: {off} values off by one over {len(sizes)} sizes")
        exact = ours(imgdump, path, 37, 23)
        check(np.array_equal(exact, src), "resize to the same size is an exact copy")

        # vt-gendata output decodes like PIL decodes it.
        out = os.path.join(d, "gen")
        subprocess.run([gendata, "--out", out, "--classes", "3", "--per-class", "3",
                        "--format", "mixed", "--seed", "5"], check=True,
                       stdout=subprocess.DEVNULL)
        worst = 0
        count = 0
        for root, _, files in os.walk(out):
            for f in sorted(files):
                p = os.path.join(root, f)
                worst = max(worst, diff(ours(imgdump, p), pil_rgb(p))[0])
                count += 1
        check(count == 9 and worst <= 1,
              f"vt-gendata: {count} files decode as PIL decodes them (max diff {worst})")

    if FAILS:
        print(f"{len(FAILS)} checks failed")
        return 1
    print("all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
