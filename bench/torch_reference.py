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
which is what a careful PyTorch user would do. It can write the fp32 pixels so the caller
can check that both sides computed the same image.

The script stays alive and times on request, so that the bench can alternate its own
cases with these in rounds on a machine whose speed drifts. It loads everything once,
prints one `ready` line, then answers one JSON line per request line on stdin until stdin
closes (every line is flushed; anything else the script prints goes to stderr):

    {"type": "ready", "torch": "2.13.0", "threads": 2, "device": "cpu", "batch": 1,
     "low_precision": "bf16", "low_psnr_db_vs_fp32": 41.2}
    {"case": "fp32", "reps": 4}   ->  {"type": "timing", "case": "fp32", "ms": [...]}
    {"case": "low", "reps": 4}    ->  {"type": "timing", "case": "low", "ms": [...]}
    anything else                 ->  {"type": "error", "message": "..."}

Each request is timed as asked, with no warm-up of its own: the caller warms up by
sending a request whose answer it discards.

    bench/torch_reference.py --weights W.safetensors --edit E.safetensors --layer layer4
        [--threads N] [--device cpu|cuda] [--pixels-out P.u8] [--fp32-only]
"""
import argparse
import json
import math
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


def timed(fn, reps, sync):
    """Milliseconds of `reps` runs of `fn`, each waited for."""
    sync()
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        sync()
        times.append((time.perf_counter() - t) * 1000.0)
    return times


def serve(cases, sync, ready, protocol):
    """Prints `ready`, then answers each request line on stdin until it closes."""

    def answer(message):
        protocol.write(json.dumps(message) + "\n")
        protocol.flush()

    answer(dict(type="ready", **ready))
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        try:
            request = json.loads(line)
            case = request["case"]
            reps = request["reps"]
            if case not in cases:
                raise ValueError(f"unknown case {case!r} (known: {', '.join(cases)})")
            if not isinstance(reps, int) or reps < 1:
                raise ValueError(f"reps must be a positive integer, not {reps!r}")
        except (ValueError, KeyError, TypeError) as e:
            answer({"type": "error", "message": f"bad request {line!r}: {e}"})
            continue
        answer({"type": "timing", "case": case, "ms": timed(cases[case], reps, sync)})


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", required=True)
    parser.add_argument("--edit", required=True, help="safetensors with features, alpha, value")
    parser.add_argument("--layer", default="layer4")
    parser.add_argument("--threads", type=int, default=0, help="0: PyTorch's default")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--pixels-out", help="write the fp32 result's u8 pixels [N,R,R,3] here")
    parser.add_argument("--fp32-only", action="store_true", help="skip the low-precision case")
    args = parser.parse_args()

    # The protocol owns stdout; a stray print from anywhere else goes to stderr.
    protocol = sys.stdout
    sys.stdout = sys.stderr

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

    ready = {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "device": str(device),
        "batch": int(features.shape[0]),
    }
    with torch.inference_mode():
        pixels = run(suffix, torch.float32, False)
        cases = {"fp32": lambda: run(suffix, torch.float32, False)}
        if not args.fp32_only:
            low = torch.float16 if device.type == "cuda" else torch.bfloat16
            low_model = build(state, args.layer).to(device).eval().to(low)
            low_model = low_model.to(memory_format=torch.channels_last)
            low_pixels = run(low_model, low, True)
            mse = ((pixels.float() - low_pixels.float()) ** 2).mean().item()
            ready["low_precision"] = "fp16" if low == torch.float16 else "bf16"
            ready["low_psnr_db_vs_fp32"] = 10 * math.log10(255 ** 2 / max(mse, 1e-10))
            cases["low"] = lambda: run(low_model, low, True)
        if args.pixels_out:
            with open(args.pixels_out, "wb") as f:
                f.write(pixels.numpy().tobytes())
        serve(cases, sync, ready, protocol)


if __name__ == "__main__":
    main()
