#!/usr/bin/env python3
"""PyTorch eager reference for `ganpaint bench`: the same edit, timed in plain PyTorch.

`ganpaint bench` writes the generator weights (reference state_dict names) and the edit
(the cached layer activation and the intervention's alpha/value planes) to safetensors
files, then runs this script in the same command. The script builds the Progressive GAN
the way GAN Dissection's proggan.py does (PixelNorm, nearest upsample, conv, WScale,
LeakyReLU(0.2), one module call per op) and times, per precision:

    edited = features * (1 - alpha) + value * alpha      # the intervention
    image  = suffix(edited)                              # every block after the layer
    pixels = ((image + 1) * 127.5).clamp(0, 255).byte()  # through to u8, on the host

fp32 runs as is; bf16 (CPU) or fp16 (CUDA) casts the weights once and runs channels-last,
which is what a careful PyTorch user would do. It prints one JSON object and can write
the fp32 pixels so the caller can check that both sides computed the same image.

    bench/torch_reference.py --weights W.safetensors --edit E.safetensors --layer layer4
        [--iters 20] [--threads N] [--device cpu|cuda] [--pixels-out P.u8]
"""
import argparse
import json
import math
import statistics
import sys
import time

import torch
import torch.nn.functional as F
from safetensors.torch import load_file


class Block(torch.nn.Module):
    """PixelNorm → [nearest ×2] → conv → WScale → LeakyReLU, as proggan.py's layers."""

    def __init__(self, weight, bias, padding, upsample, activation):
        super().__init__()
        self.weight = torch.nn.Parameter(weight, requires_grad=False)
        self.bias = torch.nn.Parameter(bias, requires_grad=False)
        self.padding = padding
        self.upsample = upsample
        self.activation = activation
        kernel = weight.shape[-1]
        gain = math.sqrt(2) / kernel if activation else 1.0
        self.scale = gain / math.sqrt(weight.shape[1])

    def forward(self, x):
        x = x / torch.sqrt(torch.mean(x ** 2, dim=1, keepdim=True) + 1e-8)
        if self.upsample:
            x = F.interpolate(x, scale_factor=2, mode="nearest")
        x = F.conv2d(x, self.weight, padding=self.padding)
        x = x * self.scale + self.bias.view(1, -1, 1, 1)
        if self.activation:
            x = F.leaky_relu(x, 0.2)
        return x


def build(state, layer):
    """The blocks after `layer`, in order, from a state_dict with reference names."""
    names = []
    index = 1
    while f"layer{index}.conv.weight" in state:
        names.append(f"layer{index}")
        index += 1
    output = [k[: -len(".conv.weight")] for k in state if k.startswith("output_") and k.endswith(".conv.weight")]
    names += output
    if layer not in names:
        sys.exit(f"layer {layer!r} not in the weights ({', '.join(names)})")
    blocks = []
    for i, name in enumerate(names):
        weight = state[f"{name}.conv.weight"].float()
        bias = state[f"{name}.wscale.b"].float()
        kernel = weight.shape[-1]
        is_output = name.startswith("output_")
        padding = 3 if kernel == 4 else kernel // 2
        # layer3, layer5, … (odd layers after the first pair) upsample.
        upsample = (not is_output) and i >= 2 and i % 2 == 0
        blocks.append((name, Block(weight, bias, padding, upsample, not is_output)))
    start = names.index(layer) + 1
    return torch.nn.Sequential(*[b for _, b in blocks[start:]])


def timed(fn, iters, sync):
    for _ in range(3):
        fn()
    sync()
    times = []
    for _ in range(iters):
        t = time.perf_counter()
        fn()
        sync()
        times.append((time.perf_counter() - t) * 1000.0)
    times.sort()
    p95 = times[min(len(times) - 1, math.ceil(0.95 * len(times)) - 1)]
    return {"p50_ms": statistics.median(times), "p95_ms": p95, "iters": iters}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", required=True)
    parser.add_argument("--edit", required=True, help="safetensors with features, alpha, value")
    parser.add_argument("--layer", default="layer4")
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--threads", type=int, default=0, help="0: PyTorch's default")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--pixels-out", help="write the fp32 result's u8 pixels [N,R,R,3] here")
    args = parser.parse_args()

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.backends.cudnn.benchmark = True
    sync = (lambda: torch.cuda.synchronize()) if device.type == "cuda" else (lambda: None)

    state = load_file(args.weights)
    edit = load_file(args.edit)
    suffix = build(state, args.layer).to(device).eval()
    features = edit["features"].float().to(device)
    alpha = edit["alpha"].float().to(device)
    value = edit["value"].float().to(device)

    def run(model, kind, channels_last):
        x = features.to(kind)
        a = alpha.to(kind)
        v = value.to(kind)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        x = x * (1 - a) + v * a
        image = model(x).float()
        return ((image + 1) * 127.5).clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous().cpu()

    result = {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "device": str(device),
        "batch": int(features.shape[0]),
    }
    with torch.inference_mode():
        pixels = run(suffix, torch.float32, False)
        result["fp32"] = timed(lambda: run(suffix, torch.float32, False), args.iters, sync)
        low = torch.float16 if device.type == "cuda" else torch.bfloat16
        low_model = build(state, args.layer).to(device).eval().to(low)
        low_model = low_model.to(memory_format=torch.channels_last)
        low_pixels = run(low_model, low, True)
        key = "fp16" if low == torch.float16 else "bf16"
        result[key] = timed(lambda: run(low_model, low, True), args.iters, sync)
        mse = ((pixels.float() - low_pixels.float()) ** 2).mean().item()
        result[f"{key}_psnr_db_vs_fp32"] = 10 * math.log10(255 ** 2 / max(mse, 1e-10))
    if args.pixels_out:
        with open(args.pixels_out, "wb") as f:
            f.write(pixels.numpy().tobytes())
    print(json.dumps(result))


if __name__ == "__main__":
    main()
