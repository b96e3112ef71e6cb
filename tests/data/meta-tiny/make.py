"""Writes a tiny 2-shard Meta checkpoint (params.json, consolidated.00.pth, consolidated.01.pth) with CPython's
own pickle (protocol 2) and zipfile modules, emulating what torch.save does: an OrderedDict state dict (with the
_metadata attribute nn.Module.state_dict() sets) of tensors reduced to torch._utils._rebuild_tensor_v2(persistent
storage, ...), bf16 storages in <archive>/data/<key>. Stand-in modules named torch / torch._utils give pickle
the GLOBAL names; nothing from torch is needed. Shard 1 is written with force_zip64 (ZIP64 local extra fields).

Element i (row-major, of the merged tensor) of tensor number t is ((37*t + 11*i) % 251 - 125) / 64, exact in
bf16. Tensor numbers follow the order below. Run: python3 make.py <outdir>. Standard library only.
"""
import collections, json, struct, sys, types, zipfile, os, pickle, io

dim, n_layers, n_heads, n_kv, vocab, multiple_of = 8, 1, 2, 2, 16, 8
hd = dim // n_heads
ffn = multiple_of * ((int(2 * 4 * dim / 3) + multiple_of - 1) // multiple_of)  # 24
shards = 2

# name, shape, split axis (0 rows, 1 columns, None replicated)
tensors = [("tok_embeddings.weight", (vocab, dim), 1)]
for l in range(n_layers):
    p = f"layers.{l}."
    tensors += [(p + "attention.wq.weight", (n_heads * hd, dim), 0), (p + "attention.wk.weight", (n_kv * hd, dim), 0),
                (p + "attention.wv.weight", (n_kv * hd, dim), 0), (p + "attention.wo.weight", (dim, n_heads * hd), 1),
                (p + "feed_forward.w1.weight", (ffn, dim), 0), (p + "feed_forward.w2.weight", (dim, ffn), 1),
                (p + "feed_forward.w3.weight", (ffn, dim), 0), (p + "attention_norm.weight", (dim,), None),
                (p + "ffn_norm.weight", (dim,), None)]
tensors += [("norm.weight", (dim,), None), ("output.weight", (vocab, dim), 0), ("rope.freqs", (hd // 2,), None)]

def value(t, i):
    return ((37 * t + 11 * i) % 251 - 125) / 64.0

def bf16(x):
    return struct.pack("<I", struct.unpack("<I", struct.pack("<f", x))[0])[2:]  # exact: the low half is zero

# Stand-ins so that pickle writes GLOBAL torch._utils _rebuild_tensor_v2 and GLOBAL torch BFloat16Storage.
torch = types.ModuleType("torch"); utils = types.ModuleType("torch._utils")
class BFloat16Storage: pass
BFloat16Storage.__module__ = "torch"
def _rebuild_tensor_v2(*a): raise RuntimeError("never called")
_rebuild_tensor_v2.__module__ = "torch._utils"
torch.BFloat16Storage = BFloat16Storage; utils._rebuild_tensor_v2 = _rebuild_tensor_v2; torch._utils = utils
sys.modules["torch"] = torch; sys.modules["torch._utils"] = utils

class Storage:
    def __init__(self, key, numel): self.key, self.numel = key, numel
class Tensor:
    def __init__(self, storage, shape): self.storage, self.shape = storage, shape
    def __reduce_ex__(self, proto):
        stride, s = [], 1
        for d in reversed(self.shape): stride.insert(0, s); s *= d
        return (_rebuild_tensor_v2, (self.storage, 0, tuple(self.shape), tuple(stride), False, collections.OrderedDict()))

class Pickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, Storage): return ("storage", BFloat16Storage, obj.key, "cpu", obj.numel)
        return None

out = sys.argv[1]
os.makedirs(out, exist_ok=True)
with open(os.path.join(out, "params.json"), "w") as f:
    json.dump({"dim": dim, "multiple_of": multiple_of, "n_heads": n_heads, "n_layers": n_layers, "norm_eps": 1e-06, "vocab_size": -1}, f)

for s in range(shards):
    state, blobs = collections.OrderedDict(), []
    for t, (name, shape, axis) in enumerate(tensors):
        rows = shape[0]; cols = shape[1] if len(shape) > 1 else 1
        r0, r1, c0, c1 = 0, rows, 0, cols
        if axis == 0: r0, r1 = s * rows // shards, (s + 1) * rows // shards
        if axis == 1: c0, c1 = s * cols // shards, (s + 1) * cols // shards
        data = b"".join(bf16(value(t, r * cols + c)) for r in range(r0, r1) for c in range(c0, c1))
        local = (r1 - r0, c1 - c0) if len(shape) > 1 else (r1 - r0,)
        key = str(len(blobs))
        blobs.append((key, data))
        state[name] = Tensor(Storage(key, len(data) // 2), local)
    state._metadata = collections.OrderedDict([("", {"version": 1})])
    buf = io.BytesIO(); Pickler(buf, protocol=2).dump(state)
    with zipfile.ZipFile(os.path.join(out, f"consolidated.{s:02d}.pth"), "w", zipfile.ZIP_STORED) as z:
        def add(name, data):
            with z.open(zipfile.ZipInfo(name, (1980, 1, 1, 0, 0, 0)), "w", force_zip64=(s == 1)) as w: w.write(data)
        add("consolidated/data.pkl", buf.getvalue())
        add("consolidated/byteorder", b"little")
        for key, data in blobs: add(f"consolidated/data/{key}", data)
        add("consolidated/version", b"3\n")
