#!/usr/bin/env python3
"""The engine against an independent implementation (PyTorch, CPU, float32).

For the same weights, images and hyper-parameters, vggtune's tensors after a
few SGD steps and its logits must match PyTorch's to float32 rounding.
PyTorch here follows the job spec literally: torchvision's vgg16().features,
Flatten, Linear layers with ReLU, mean softmax cross-entropy, Keras SGD
(lr_t = lr / (1 + decay * iterations), v = m v - lr_t g, Nesterov
w += m v - lr_t g), images in class-then-file order (shuffle false).

Cases: finetune from torchvision-layout safetensors weights (torch
preprocessing), bottleneck from a Keras-layout HDF5 file written by h5py
(caffe preprocessing), trainable_blocks 3 (blocks 3-5 and the head) and
scratch (all 13 convolutions and the head: the whole stack's gradients).
"""
import copy
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vtpy  # noqa: E402

a = vtpy.args()
np, torch, torchvision, h5py, PIL = vtpy.need("numpy", "torch", "torchvision", "h5py", "PIL")
from PIL import Image  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402

torch.set_num_threads(2)
torch.use_deterministic_algorithms(True)
VGGTUNED = os.path.join(a.build, "daemon", "vggtuned")
TMP = vtpy.tmpdir(a.keep)
S = 32                      # image size: a multiple of 32, small for speed
CLASSES = ["ant", "bee", "cat"]
PER_CLASS = 3               # 9 images, batch 4: steps of 4, 4, 1 per epoch
FEAT_IDX = [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28]
BLOCK_OF = dict(zip(FEAT_IDX, [1, 1, 2, 2, 3, 3, 3, 4, 4, 4, 5, 5, 5]))
KERAS = ["block1_conv1", "block1_conv2", "block2_conv1", "block2_conv2", "block3_conv1",
         "block3_conv2", "block3_conv3", "block4_conv1", "block4_conv2", "block4_conv3",
         "block5_conv1", "block5_conv2", "block5_conv3"]


def make_images(root):
    """Seeded random PNGs at exactly S x S (no resize involved)."""
    rng = np.random.default_rng(7)
    paths = []
    for c in CLASSES:
        os.makedirs(os.path.join(root, c), exist_ok=True)
        for i in range(PER_CLASS):
            arr = rng.integers(0, 256, size=(S, S, 3), dtype=np.uint8)
            p = os.path.join(root, c, f"img{i}.png")
            Image.fromarray(arr).save(p)
            paths.append(p)
    return paths


def load_batch(paths, prep):
    """NCHW float32 exactly as the spec's preprocessing defines."""
    x = np.stack([np.asarray(Image.open(p).convert("RGB")) for p in paths])
    x = torch.from_numpy(x).permute(0, 3, 1, 2).float()        # RGB, 0..255
    if prep == "torch":
        mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
        std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
        return ((x / 255.0) - mean) / std
    x = x[:, [2, 1, 0]]                                           # BGR
    return x - torch.tensor([103.939, 116.779, 123.68]).view(1, 3, 1, 1)


def build(hidden, nclasses, seed):
    torch.manual_seed(seed)
    feats = torchvision.models.vgg16().features
    for m in feats.modules():                 # larger init so signals survive 13 layers
        if isinstance(m, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            torch.nn.init.uniform_(m.bias, -0.1, 0.1)
    layers, fin = [], 512 * (S // 32) ** 2
    for h in hidden:
        layers += [torch.nn.Linear(fin, h), torch.nn.ReLU()]
        fin = h
    layers.append(torch.nn.Linear(fin, nclasses))
    head = torch.nn.Sequential(*layers)
    return feats, head


def keras_sgd(params, vel, lr, momentum, decay, it):
    lr_t = lr / (1.0 + decay * it)
    with torch.no_grad():
        for p in params:
            g = p.grad
            v = vel.setdefault(p, torch.zeros_like(p))
            v.mul_(momentum).sub_(lr_t * g)
            p.add_(momentum * v - lr_t * g)


def torch_train(feats, head, trainable_blocks, paths, labels, prep, spec):
    first = 5 - trainable_blocks              # blocks 1..first frozen
    params = [p for i, m in enumerate(feats) if isinstance(m, torch.nn.Conv2d)
              and BLOCK_OF[i] > first for p in m.parameters()] + list(head.parameters())
    for p in feats.parameters():
        p.requires_grad_(False)
    for p in params:
        p.requires_grad_(True)
    vel, it, B = {}, 0, spec["batch_size"]
    lossf = torch.nn.CrossEntropyLoss()
    for _ in range(spec["epochs"]):
        for s in range(0, len(paths), B):
            x = load_batch(paths[s:s + B], prep)
            y = torch.tensor(labels[s:s + B])
            for p in params:
                p.grad = None
            loss = lossf(head(torch.flatten(feats(x), 1)), y)
            loss.backward()
            keras_sgd(params, vel, spec["optimizer"]["lr"], spec["optimizer"]["momentum"],
                      spec["optimizer"]["decay"], it)
            it += 1


def write_keras_h5(path, feats):
    """Keras legacy layout: layer_names, weight_names, HWIO kernels."""
    convs = [m for m in feats if isinstance(m, torch.nn.Conv2d)]
    with h5py.File(path, "w") as f:
        names = ["input_1"] + KERAS[:2] + ["block1_pool"] + KERAS[2:]
        f.attrs["layer_names"] = [n.encode() for n in names]
        f.attrs["keras_version"] = b"2.1.6"
        f.attrs["backend"] = b"tensorflow"
        for n in names:
            g = f.create_group(n)
            if n not in KERAS:
                g.attrs["weight_names"] = np.array([], dtype="S1")
                continue
            m = convs[KERAS.index(n)]
            wn = [f"{n}_W_1:0".encode(), f"{n}_b_1:0".encode()]
            g.attrs["weight_names"] = wn
            g.create_dataset(wn[0].decode(), data=m.weight.detach().permute(2, 3, 1, 0).numpy())
            g.create_dataset(wn[1].decode(), data=m.bias.detach().numpy())


def state(feats, head):
    r = {f"features.{k}": v.detach().clone() for k, v in feats.state_dict().items()}
    r.update({f"head.{j}.{k}": v.detach().clone() for j, m in
              enumerate(x for x in head if isinstance(x, torch.nn.Linear))
              for k, v in m.state_dict().items()})
    return r


def run_case(name, trainable_blocks, weights_kind, hidden, lr, direct_tol):
    """Trains the same job in vggtuned and in PyTorch (float32 and float64).

    Every tensor's update (after - before) must be as close to the float64
    update as float32 arithmetic allows: within 4x PyTorch-float32's own
    distance from float64, plus 5e-5.  Where training is well conditioned,
    ours must also match PyTorch-float32 directly within direct_tol.  Frozen
    tensors must come back bit-identical."""
    global load_batch
    d = os.path.join(TMP, name)
    data = os.path.join(d, "data")
    paths = make_images(data)
    labels = [CLASSES.index(os.path.basename(os.path.dirname(p))) for p in paths]
    feats, head = build(hidden, len(CLASSES), seed=11 + trainable_blocks)
    f64, h64 = copy.deepcopy(feats).double(), copy.deepcopy(head).double()
    before = state(feats, head)
    prep = "torch" if weights_kind == "safetensors" else "caffe"
    if weights_kind == "safetensors":
        wpath = os.path.join(d, "vgg16.safetensors")
        save_file({k: v.contiguous() for k, v in before.items() if k.startswith("features.")},
                  wpath)
    else:
        wpath = os.path.join(d, "vgg16_notop.h5")
        write_keras_h5(wpath, feats)
    ipath = os.path.join(d, "init.safetensors")
    save_file({k: v.contiguous() for k, v in before.items() if k.startswith("head.")}, ipath)
    spec = {"name": name, "trainable_blocks": trainable_blocks,
            "data": {"train": data, "image_size": S, "preprocess": "auto", "shuffle": False},
            "weights": wpath, "init": ipath, "head": {"dropout": 0.0},
            "optimizer": {"lr": lr, "momentum": 0.9, "nesterov": True, "decay": 0.01},
            "epochs": 2, "batch_size": 4, "seed": 3, "precision": "fp32",
            "output": os.path.join(d, "out")}
    with open(os.path.join(d, "job.json"), "w") as f:
        json.dump(spec, f)
    vtpy.run([VGGTUNED, "run", "--backend", "cpu", "--quiet", os.path.join(d, "job.json")])
    ours = load_file(os.path.join(d, "out", "model.safetensors"))

    torch_train(feats, head, trainable_blocks, paths, labels, prep, spec)
    as_f32 = load_batch
    load_batch = lambda p, pr: as_f32(p, pr).double()  # noqa: E731
    torch_train(f64, h64, trainable_blocks, paths, labels, prep, spec)
    load_batch = as_f32
    r32, r64 = state(feats, head), state(f64, h64)

    vtpy.check(set(ours) == set(r32), f"{name}: tensor names differ: "
               f"{sorted(set(ours) ^ set(r32))}")
    worst = (0.0, "")
    for k in sorted(r32):
        if k not in ours:
            continue
        vtpy.check(tuple(ours[k].shape) == tuple(r32[k].shape),
                   f"{name}: {k} shape {tuple(ours[k].shape)} vs {tuple(r32[k].shape)}")
        up64 = (r64[k] - before[k].double()).numpy()
        if not np.any(up64):
            vtpy.check(torch.equal(ours[k], before[k]), f"{name}: frozen {k} changed")
            continue
        e_ours = vtpy.rel_err((ours[k] - before[k]).numpy(), up64)
        e_t32 = vtpy.rel_err((r32[k] - before[k]).numpy(), up64)
        e_direct = vtpy.rel_err(ours[k].numpy(), r32[k].numpy())
        worst = max(worst, (e_ours, k))
        vtpy.check(e_ours <= 4 * e_t32 + 5e-5,
                   f"{name}: {k} update is {e_ours:.3g} from float64; PyTorch float32 is "
                   f"{e_t32:.3g}")
        vtpy.check(e_direct < direct_tol,
                   f"{name}: {k} differs from PyTorch float32 by {e_direct:.3g}")
    moves = {k: vtpy.rel_err(before[k].numpy(), ours[k].numpy()) for k in ours
             if k.startswith("head.")}
    vtpy.check(min(moves.values()) > 1e-3 and max(moves.values()) > 1e-2,
               f"{name}: the head barely trained: {moves}")
    print(f"{name}: {len(r32)} tensors; worst update error vs float64 {worst[0]:.3g} ({worst[1]})")

    # Logits of the trained model: vggtuned predict vs PyTorch.
    r = vtpy.run([VGGTUNED, "predict", "--backend", "cpu", "--json", "--top", "1",
                  os.path.join(d, "out", "model.safetensors")] + paths)
    got = np.array([o["logits"] for o in json.loads(r.stdout)])
    with torch.no_grad():
        want = head(torch.flatten(feats(load_batch(paths, prep)), 1)).numpy()
        want64 = h64(torch.flatten(f64(load_batch(paths, prep).double()), 1)).numpy()
    e, e_t32 = vtpy.rel_err(got, want64), vtpy.rel_err(want, want64)
    vtpy.check(e <= 4 * e_t32 + 2e-6 and vtpy.rel_err(got, want) < direct_tol,
               f"{name}: logits are {e:.3g} from float64 (PyTorch float32: {e_t32:.3g})")
    print(f"{name}: logits {e:.3g} from float64, PyTorch float32 {e_t32:.3g}")
    meta = json.loads(open(os.path.join(d, "out", "classmap.json")).read())
    vtpy.check(meta["classes"] == CLASSES, f"{name}: classmap {meta}")


run_case("finetune", 1, "safetensors", [64, 32], 0.05, 2e-5)
run_case("bottleneck", 0, "keras", [48], 0.0005, 2e-5)
run_case("blocks3", 3, "safetensors", [40], 0.003, 5e-3)
run_case("scratch", 5, "safetensors", [24], 0.002, 5e-3)
vtpy.done()
