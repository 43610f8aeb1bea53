"""Writes the generator test fixtures in tests/fixtures/proggan/ (small: about 200 KB).

Run with the project's venv:  .venv/bin/python scripts/make_fixtures.py

A tiny random Progressive GAN (z 32, channels 32,32,16,8: a 32x32 output, layer4 16x8x8)
is saved in every container the Rust loader accepts, plus the reference outputs:
  tiny_zip.pth            torch.save zip format, bare state_dict, modern names
  tiny_legacy_wrapped.pth legacy (pre-1.6) format, {'state_dict': ...}
  tiny_oldnames.pth       legacy format, old names features.N.* / output.*
  tiny.safetensors        safetensors
  expected.safetensors    z (ids 0..4 from RandomState(1)), image = G(z), layer4 = G.features(z, 'layer4')
"""
import os
import sys
from collections import OrderedDict

import torch
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(__file__))
from proggan_reference import ProgGan, z_for_ids  # noqa: E402

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "proggan")


def main():
    os.makedirs(OUT, exist_ok=True)
    torch.manual_seed(20190101)
    model = ProgGan([32, 32, 32, 16, 8]).eval()
    state = OrderedDict((k, v.detach().clone()) for k, v in model.state_dict().items())

    torch.save(state, os.path.join(OUT, "tiny_zip.pth"))
    torch.save({"state_dict": state}, os.path.join(OUT, "tiny_legacy_wrapped.pth"),
               _use_new_zipfile_serialization=False)
    old = OrderedDict()
    for key, value in state.items():
        head, rest = key.split(".", 1)
        if head.startswith("layer"):
            old[f"features.{int(head[5:]) - 1}.{rest}"] = value
        else:
            old[f"output.{rest}"] = value
    torch.save(old, os.path.join(OUT, "tiny_oldnames.pth"), _use_new_zipfile_serialization=False)
    save_file({k: v.contiguous() for k, v in state.items()}, os.path.join(OUT, "tiny.safetensors"))

    z = z_for_ids(range(4), 32)
    with torch.no_grad():
        image = model(z)
        layer4 = model.features(z, "layer4")
    save_file({"z": z, "image": image.contiguous(), "layer4": layer4.contiguous()},
              os.path.join(OUT, "expected.safetensors"))
    print("wrote fixtures to", os.path.normpath(OUT), "image range", image.min().item(), image.max().item())


if __name__ == "__main__":
    main()
