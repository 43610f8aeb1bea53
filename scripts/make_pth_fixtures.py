#!/usr/bin/env python3
"""Writes the small torch.save fixtures used by the tests of src/model/pth.rs.

Run with a Python that has torch (e.g. `.venv/bin/python scripts/make_pth_fixtures.py`).
Output goes to tests/fixtures/pth/ (a few KB in all):

  state_dict_zip.pth        the state dict, zip format (top folder = file stem)
  state_dict_legacy.pth     the same, legacy format (_use_new_zipfile_serialization=False)
  wrapped_legacy.pth        legacy {'state_dict': ..., 'epoch': 7, 'optimizer': {...}}
  wrapped_zip.pth           zip of the same wrapper, saved to a buffer (top folder 'archive')
  legacy_storage_view.pth   hand-written legacy file whose storage persistent id carries
                            view metadata (what torch < 1.0 wrote for storage slices)
  byteorder_big.pth         zip whose byteorder record says 'big'
  deflated_zip.pth          state_dict_zip.pth re-zipped with deflate compression
  expected.json             {fixture group: [{name, dtype, shape, hex, values}]}, the
                            expected contiguous little-endian bytes of every tensor

Regenerating changes the files byte-wise (torch embeds random ids and memory
addresses as storage keys) but not the expected tensors.
"""

import collections
import io
import json
import os
import pickle
import struct
import sys
import zipfile

import torch
from torch import nn

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "pth")

DTYPE_NAMES = {
    torch.float32: "float32",
    torch.float64: "float64",
    torch.float16: "float16",
    torch.bfloat16: "bfloat16",
    torch.int64: "int64",
    torch.int32: "int32",
    torch.int16: "int16",
    torch.int8: "int8",
    torch.uint8: "uint8",
    torch.bool: "bool",
}


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3, 4)
        self.bn = nn.BatchNorm1d(2)


def make_state_dict():
    net = Net()
    with torch.no_grad():
        net.lin.weight.copy_(torch.arange(12, dtype=torch.float32).reshape(4, 3) * 0.5 - 2)
        net.lin.bias.copy_(torch.tensor([0.25, -0.75, 1.5, 3.0]))
        net.bn.running_mean.copy_(torch.tensor([0.125, -0.5]))
        net.bn.running_var.copy_(torch.tensor([2.0, 4.0]))
        net.bn.num_batches_tracked.fill_(42)  # a 0-dim int64 tensor
    sd = net.state_dict()  # OrderedDict with a _metadata attribute
    w = sd["lin.weight"]
    sd["lin_t"] = w.t()  # shares w's storage, non-contiguous
    sd["rows"] = w[1:3]  # shares w's storage, storage offset 3
    sd["col"] = w[:, 1]  # shares w's storage, offset 1, stride 3
    sd["f64"] = torch.tensor([1.5, -2.25, 1e300], dtype=torch.float64)
    sd["f16"] = torch.tensor([[0.5, -1.0], [65504.0, 2.0**-24]], dtype=torch.float16)
    sd["bf16"] = torch.tensor([1.0, -3.5, 1e38], dtype=torch.bfloat16)
    sd["i32"] = torch.tensor([[-(2**31), 2**31 - 1], [0, -1]], dtype=torch.int32)
    sd["i16"] = torch.tensor([-300, 300], dtype=torch.int16)
    sd["i8"] = torch.tensor([-128, 127, 5], dtype=torch.int8)
    sd["u8"] = torch.tensor([0, 255, 7], dtype=torch.uint8)
    sd["flags"] = torch.tensor([True, False, True])
    sd["note"] = "not a tensor"  # must be skipped
    sd["expanded"] = torch.arange(3, dtype=torch.float32).expand(2, 3)  # stride (0, 1)
    sd["empty"] = torch.zeros(0, 3)
    sd["param"] = nn.Parameter(torch.tensor([1.0, 2.0]))  # _rebuild_parameter
    return sd


def describe(name, t):
    c = t.detach().contiguous()
    raw = c.numpy().tobytes() if c.dtype != torch.bfloat16 else c.view(torch.int16).numpy().tobytes()
    values = c.flatten().tolist()
    return {
        "name": name,
        "dtype": DTYPE_NAMES[c.dtype],
        "shape": list(c.shape),
        "hex": raw.hex(),
        "values": values,
    }


def expected_of(sd):
    return [describe(k, v) for k, v in sd.items() if isinstance(v, torch.Tensor)]


class _Storage:
    """Stands for a storage in the hand-written legacy pickle."""

    def __init__(self, pid):
        self.pid = pid


class _Tensor:
    def __init__(self, storage, offset, size, stride):
        self.args = (storage, offset, size, stride, False, collections.OrderedDict())

    def __reduce__(self):
        return (torch._utils._rebuild_tensor_v2, self.args)


class _LegacyPickler(pickle.Pickler):
    def persistent_id(self, obj):
        return obj.pid if isinstance(obj, _Storage) else None


def write_legacy_storage_view(path):
    """Legacy file with a storage view: root storage '0' holds 6 floats; the
    view is elements [2, 5) of it; the tensor is elements [1, 3) of the view."""
    root = [10.0, 11.0, 12.0, 13.0, 14.0, 15.0]
    view = _Storage(("storage", torch.FloatStorage, "0", "cpu", 6, ("1", 2, 3)))
    obj = collections.OrderedDict(v=_Tensor(view, 1, (2,), (1,)))
    buf = io.BytesIO()
    for header in (0x1950A86A20F9469CFC6C, 1001,
                   {"protocol_version": 1001, "little_endian": True,
                    "type_sizes": {"short": 2, "int": 4, "long": 4}}):
        pickle.dump(header, buf, protocol=2)
    _LegacyPickler(buf, protocol=2).dump(obj)
    pickle.dump(["0"], buf, protocol=2)
    buf.write(struct.pack("<q", len(root)))
    buf.write(struct.pack("<6f", *root))
    with open(path, "wb") as f:
        f.write(buf.getvalue())
    # Check it with torch itself.
    loaded = torch.load(path, weights_only=False)
    assert loaded["v"].tolist() == [13.0, 14.0], loaded
    return [describe("v", loaded["v"])]


def rezip(src, dst, compression=zipfile.ZIP_STORED, byteorder=None):
    """Copies a torch zip with Python's zipfile (optionally deflated, or with
    another byteorder record)."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", compression) as zout:
        for info in zin.infolist():
            data = zin.read(info.filename)
            if byteorder is not None and info.filename.endswith("/byteorder"):
                data = byteorder
            zout.writestr(info.filename, data)


def main():
    os.makedirs(OUT, exist_ok=True)
    torch.manual_seed(0)
    sd = make_state_dict()
    p = lambda name: os.path.join(OUT, name)

    torch.save(sd, p("state_dict_zip.pth"))
    torch.save(sd, p("state_dict_legacy.pth"), _use_new_zipfile_serialization=False)
    wrapper = {"state_dict": sd, "epoch": 7, "optimizer": {"lr": 0.1, "betas": (0.9, 0.999)}}
    torch.save(wrapper, p("wrapped_legacy.pth"), _use_new_zipfile_serialization=False)
    buf = io.BytesIO()
    torch.save(wrapper, buf)
    with open(p("wrapped_zip.pth"), "wb") as f:
        f.write(buf.getvalue())
    view_expected = write_legacy_storage_view(p("legacy_storage_view.pth"))
    rezip(p("state_dict_zip.pth"), p("byteorder_big.pth"), byteorder=b"big")
    rezip(p("state_dict_zip.pth"), p("deflated_zip.pth"), compression=zipfile.ZIP_DEFLATED)

    # Sanity: torch reads back what we expect.
    for name in ("state_dict_zip.pth", "state_dict_legacy.pth", "deflated_zip.pth"):
        back = torch.load(p(name), weights_only=False)
        assert expected_of(back) == expected_of(sd), name

    expected = {
        "torch_version": torch.__version__,
        "state_dict": expected_of(sd),
        "legacy_storage_view": view_expected,
    }
    with open(p("expected.json"), "w") as f:
        json.dump(expected, f, indent=1)
        f.write("\n")
    total = sum(os.path.getsize(p(n)) for n in os.listdir(OUT))
    print(f"wrote {len(os.listdir(OUT))} files, {total} bytes, to {os.path.normpath(OUT)}", file=sys.stderr)


if __name__ == "__main__":
    main()
