#!/usr/bin/env python3
"""Exports Open-Unmix spectrogram models (the `openunmix` package) to one Demix ONNX model.

Open-Unmix has one model per target (vocals, drums, bass, other); each maps the mixture's
magnitude spectrogram to that target's magnitude estimate. This script stacks the chosen
targets into ONE graph with the Demix manifest embedded (docs/model-contract.md):

    input  `mix`        magnitude [1, C, F, T]            (F = n_fft/2 + 1, all bins)
    output `estimates`  magnitude [1, S, C, F, T]         (S targets, manifest order)

`output.kind = "magnitude"`: Demix turns the estimates into ratio masks est_s / sum(est) and
applies them to the mixture spectrogram, which equals Open-Unmix's own separation with
`niter=0, softmask=True` (no multichannel Wiener EM iterations, which need the whole song).

How the graph is streamed depends on the LSTM:

* unidirectional (causal) models are exported STATEFUL: one frame per call (T = 1), with the
  LSTM states as extra tensors `h_in`/`c_in` -> `h_out`/`c_out`, shape
  [S, layers, 1, hidden]. Streaming is exact: the output equals the model run on the whole song.
* bidirectional models (all published weights: umxhq, umx, umxl) are exported WINDOWED: every
  `--step` frames Demix runs the last `--context` frames and keeps the `--step` estimates that
  end `--lookahead` frames before the window's end. The latency this adds is
  hop * (lookahead + step - 1) samples, printed at the end.

Usage (see docs/bring-your-own-model.md):

    # published weights the user downloaded, e.g. umxhq's vocals-b62c91ce.pth, drums-…, …
    python3 export_open_unmix.py umxhq.onnx --weights ~/umxhq \\
        --context 64 --step 16 --lookahead 16
    # a randomly initialised model (no weights needed), e.g. to try the pipeline
    python3 export_open_unmix.py random.onnx --random-init --unidirectional

Nothing here downloads anything. Requires torch (1.13 or newer), openunmix, onnx and numpy;
onnxruntime, when installed, is used to check the exported graph against PyTorch.
"""

import argparse
import glob
import json
import os
import sys
import warnings

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from openunmix import utils
from openunmix.model import OpenUnmix
from torch import nn

TARGETS = ["vocals", "drums", "bass", "other"]
OPSET = 17


def fail(message):
    """Stops with a one-line error (no traceback) and exit code 1."""
    print(f"error: {message}", file=sys.stderr)
    sys.exit(1)


def config_from_state(state, path):
    """Reads an Open-Unmix model's hyper-parameters from the shapes in its state dict."""
    needed = ["fc1.weight", "fc3.weight", "input_mean", "lstm.weight_ih_l0"]
    missing = [k for k in needed if k not in state]
    if missing:
        fail(f"{path} is not an Open-Unmix state dict (missing {', '.join(missing)})")
    hidden = state["fc1.weight"].shape[0]
    max_bin = state["input_mean"].shape[0]
    channels = state["fc1.weight"].shape[1] // max_bin
    out_bins = state["fc3.weight"].shape[0] // channels
    layers = sum(1 for k in state if k.startswith("lstm.weight_ih_l") and "reverse" not in k)
    return {
        "nb_bins": out_bins,
        "nb_channels": channels,
        "hidden_size": hidden,
        "nb_layers": layers,
        "unidirectional": "lstm.weight_ih_l0_reverse" not in state,
        "max_bin": max_bin,
    }


def load_weights(weights_dir, targets):
    """Loads `<target>*.pth` for every target from `weights_dir` (the files published on
    Zenodo, or torch.hub's cache folder after openunmix downloaded them)."""
    models = {}
    for target in targets:
        paths = sorted(glob.glob(os.path.join(weights_dir, f"{target}*.pth")))
        if len(paths) != 1:
            found = ", ".join(os.path.basename(p) for p in paths) or "none"
            fail(f"expected exactly one {target}*.pth in {weights_dir}, found {found}")
        try:
            # weights_only refuses pickled code in a downloaded file (PyTorch 1.13 and newer).
            state = torch.load(paths[0], map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - any unreadable file gets the same message
            fail(f"cannot read {paths[0]} as a PyTorch state dict: {e}")
        if not isinstance(state, dict):
            fail(f"{paths[0]} does not hold a state dict")
        config = config_from_state(state, paths[0])
        model = OpenUnmix(**config)
        missing, _unexpected = model.load_state_dict(state, strict=False)
        if missing:
            fail(f"{paths[0]} lacks weights for {', '.join(missing)}")
        models[target] = model
    configs = {t: config_from_state(m.state_dict(), t) for t, m in models.items()}
    first = next(iter(configs.values()))
    for target, config in configs.items():
        if config != first:
            fail(f"the {target} model's shape {config} differs from {first}")
    return models


def random_models(targets, n_fft, channels, hidden, layers, unidirectional, max_bin, seed):
    """Open-Unmix models with PyTorch's default random initialisation (seeded)."""
    torch.manual_seed(seed)
    return {
        t: OpenUnmix(
            nb_bins=n_fft // 2 + 1,
            nb_channels=channels,
            hidden_size=hidden,
            nb_layers=layers,
            unidirectional=unidirectional,
            max_bin=max_bin,
        )
        for t in targets
    }


def model_config(model):
    """The hyper-parameters of one OpenUnmix module."""
    return {
        "bins": model.nb_output_bins,
        "channels": model.fc1.in_features // model.nb_bins,
        "hidden": model.hidden_size,
        "layers": model.lstm.num_layers,
        "unidirectional": not model.lstm.bidirectional,
    }


def step(model, mix, h, c):
    """OpenUnmix.forward with explicit LSTM state: the same operations in the same order.
    mix [1, C, F, T] -> (estimate [1, C, F, T], h', c')."""
    x = mix.permute(3, 0, 1, 2)
    nb_frames, nb_samples, nb_channels, _ = x.shape
    magnitude = x
    x = x[..., : model.nb_bins]
    x = x + model.input_mean
    x = x * model.input_scale
    x = model.fc1(x.reshape(-1, nb_channels * model.nb_bins))
    x = model.bn1(x)
    x = x.reshape(nb_frames, nb_samples, model.hidden_size)
    x = torch.tanh(x)
    lstm_out, (h_out, c_out) = model.lstm(x, (h, c))
    x = torch.cat([x, lstm_out], -1)
    x = model.fc2(x.reshape(-1, x.shape[-1]))
    x = model.bn2(x)
    x = F.relu(x)
    x = model.fc3(x)
    x = model.bn3(x)
    x = x.reshape(nb_frames, nb_samples, nb_channels, model.nb_output_bins)
    x = x * model.output_scale + model.output_mean
    x = F.relu(x) * magnitude
    return x.permute(1, 2, 3, 0), h_out, c_out


class StatefulStack(nn.Module):
    """All targets, one frame per call, LSTM states stacked over targets:
    (mix [1,C,F,1], h_in, c_in [S, layers, 1, hidden]) -> (estimates [1,S,C,F,1], h_out, c_out)."""

    def __init__(self, models):
        super().__init__()
        self.targets = nn.ModuleList(models)

    def forward(self, mix, h_in, c_in):
        estimates, hs, cs = [], [], []
        for i, model in enumerate(self.targets):
            est, h, c = step(model, mix, h_in[i], c_in[i])
            estimates.append(est)
            hs.append(h)
            cs.append(c)
        return torch.stack(estimates, 1), torch.stack(hs, 0), torch.stack(cs, 0)


class WindowedStack(nn.Module):
    """All targets on a window of T frames: mix [1,C,F,T] -> estimates [1,S,C,F,T]."""

    def __init__(self, models):
        super().__init__()
        self.targets = nn.ModuleList(models)

    def forward(self, mix):
        return torch.stack([model(mix) for model in self.targets], 1)


def manifest(name, targets, config, rate, n_fft, hop, streaming):
    """The Demix manifest (docs/model-contract.md) of an exported stack."""
    return {
        "format_version": 1,
        "name": name,
        "sample_rate": rate,
        "n_fft": n_fft,
        "hop": hop,
        "window": "hann",
        "channels": config["channels"],
        "sources": list(targets),
        "input": {"name": "mix", "kind": "magnitude", "bins": config["bins"]},
        "output": {"name": "estimates", "kind": "magnitude"},
        "renormalize_masks": True,
        "streaming": streaming,
    }


def state_shape(config, targets):
    return [len(targets), config["layers"], 1, config["hidden"]]


def export(models, path, *, name, rate, hop, style, context=None, step_frames=None,
           lookahead=0):
    """Exports `models` ({target: OpenUnmix}) to `path` with the manifest embedded; returns
    the manifest. `style` is "stateful" (unidirectional LSTMs only) or "windowed"."""
    targets = list(models)
    modules = [models[t].eval() for t in targets]
    config = model_config(modules[0])
    n_fft = 2 * (config["bins"] - 1)
    channels, bins = config["channels"], config["bins"]
    if style == "stateful":
        if not config["unidirectional"]:
            fail("a bidirectional LSTM needs the future, so it cannot run one frame at a time; "
                 "export it windowed (--context/--step/--lookahead)")
        shape = state_shape(config, targets)
        wrapper = StatefulStack(modules).eval()
        args = (torch.zeros(1, channels, bins, 1), torch.zeros(shape), torch.zeros(shape))
        inputs, outputs = ["mix", "h_in", "c_in"], ["estimates", "h_out", "c_out"]
        streaming = {
            "style": "stateful",
            "lookahead_frames": 0,
            "state": [
                {"input": "h_in", "output": "h_out", "shape": shape},
                {"input": "c_in", "output": "c_out", "shape": shape},
            ],
        }
    else:
        if context is None or step_frames is None:
            fail("a windowed export needs --context and --step")
        if step_frames < 1 or lookahead < 0 or lookahead + step_frames > context:
            fail(f"need step >= 1 and lookahead + step <= context, got context {context}, "
                 f"step {step_frames}, lookahead {lookahead}")
        wrapper = WindowedStack(modules).eval()
        args = (torch.zeros(1, channels, bins, context),)
        inputs, outputs = ["mix"], ["estimates"]
        streaming = {
            "style": "windowed",
            "lookahead_frames": lookahead,
            "context_frames": context,
            "step_frames": step_frames,
        }
    meta = manifest(name, targets, config, rate, n_fft, hop, streaming)
    tmp = path + ".tmp"
    with torch.no_grad():
        torch.onnx.export(wrapper, args, tmp, input_names=inputs, output_names=outputs,
                          opset_version=OPSET, do_constant_folding=True)
    graph = onnx.load(tmp)
    del graph.metadata_props[:]
    entry = graph.metadata_props.add()
    entry.key = "demix.manifest"
    entry.value = json.dumps(meta, indent=1)
    graph.producer_name = "demix export_open_unmix.py"
    onnx.checker.check_model(graph)
    onnx.save(graph, tmp)
    os.replace(tmp, path)
    return meta


def check_export(models, path, meta, frames=24, seed=0):
    """Runs the exported graph in ONNX Runtime on random magnitudes, driven as Demix drives it,
    and returns the largest error relative to the estimates' peak versus PyTorch (the
    upstream OpenUnmix.forward). Returns None when onnxruntime is not installed."""
    try:
        import onnxruntime
    except ImportError:
        return None
    modules = [models[t].eval() for t in models]
    config = model_config(modules[0])
    rng = np.random.default_rng(seed)
    mix = np.abs(rng.normal(size=(1, config["channels"], config["bins"], frames))).astype(
        np.float32)
    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    with torch.no_grad():
        streaming = meta["streaming"]
        if streaming["style"] == "stateful":
            reference = torch.stack([m(torch.from_numpy(mix)) for m in modules], 1).numpy()
            shape = streaming["state"][0]["shape"]
            h = np.zeros(shape, np.float32)
            c = np.zeros(shape, np.float32)
            columns = []
            for t in range(frames):
                est, h, c = session.run(None, {"mix": mix[..., t:t + 1], "h_in": h, "c_in": c})
                columns.append(est)
            ours = np.concatenate(columns, axis=-1)
        else:
            window = mix[..., : streaming["context_frames"]]
            if window.shape[-1] < streaming["context_frames"]:
                pad = streaming["context_frames"] - window.shape[-1]
                window = np.concatenate([window, np.zeros(window.shape[:-1] + (pad,),
                                                          np.float32)], axis=-1)
            reference = torch.stack([m(torch.from_numpy(window)) for m in modules], 1).numpy()
            ours = session.run(None, {"mix": window})[0]
    peak = max(float(np.abs(reference).max()), 1e-12)
    return float(np.abs(ours - reference).max()) / peak


def latency_text(meta, slack=2):
    """The latency Demix reports for this manifest (n_fft - 1 + hop * (delay + slack))."""
    s = meta["streaming"]
    delay = s["lookahead_frames"] + (s.get("step_frames", 1) - 1)
    samples = meta["n_fft"] - 1 + meta["hop"] * (delay + slack)
    return (f"{samples} samples = {1000.0 * samples / meta['sample_rate']:.0f} ms at "
            f"{meta['sample_rate']} Hz (with the default compute slack of {slack} hops)")


def parse_args(argv):
    p = argparse.ArgumentParser(
        description="Export Open-Unmix spectrogram models to one Demix ONNX model.")
    p.add_argument("output", help="the .onnx file to write")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--weights", metavar="DIR",
                     help="folder holding <target>*.pth state dicts (e.g. umxhq from Zenodo)")
    src.add_argument("--random-init", action="store_true",
                     help="a randomly initialised model instead of trained weights")
    p.add_argument("--targets", default=",".join(TARGETS),
                   help="comma-separated targets, in output order (default: %(default)s)")
    p.add_argument("--name", help="display name (default: the output file's stem)")
    p.add_argument("--rate", type=int, default=44100,
                   help="sample rate the weights were trained at (default: %(default)s)")
    p.add_argument("--hop", type=int, default=1024,
                   help="STFT hop the weights were trained with (default: %(default)s)")
    p.add_argument("--style", choices=["stateful", "windowed"],
                   help="default: stateful for unidirectional models, windowed otherwise")
    p.add_argument("--context", type=int, default=64,
                   help="windowed: frames per call, T (default: %(default)s)")
    p.add_argument("--step", type=int, default=16,
                   help="windowed: frames kept per call, K (default: %(default)s)")
    p.add_argument("--lookahead", type=int, default=16,
                   help="windowed: future frames each kept frame sees at least, L "
                        "(default: %(default)s)")
    g = p.add_argument_group("random initialisation")
    g.add_argument("--n-fft", type=int, default=4096, help="default: %(default)s")
    g.add_argument("--channels", type=int, default=2, help="default: %(default)s")
    g.add_argument("--hidden-size", type=int, default=512, help="default: %(default)s")
    g.add_argument("--layers", type=int, default=3, help="default: %(default)s")
    g.add_argument("--unidirectional", action="store_true",
                   help="causal LSTMs (exported stateful)")
    g.add_argument("--bandwidth", type=float, default=16000.0,
                   help="highest frequency the model looks at, in Hz (default: %(default)s)")
    g.add_argument("--seed", type=int, default=0, help="default: %(default)s")
    return p.parse_args(argv)


def main(argv):
    args = parse_args(argv)
    # torch.onnx's tracer warnings concern shapes this fixed-shape export never varies.
    warnings.filterwarnings("ignore", category=UserWarning)
    warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    if not targets or len(set(targets)) != len(targets):
        fail(f"--targets must name distinct targets, got {args.targets!r}")
    if args.weights:
        models = load_weights(os.path.expanduser(args.weights), targets)
    else:
        max_bin = int(utils.bandwidth_to_max_bin(args.rate, args.n_fft, args.bandwidth))
        models = random_models(targets, args.n_fft, args.channels, args.hidden_size,
                               args.layers, args.unidirectional, max_bin, args.seed)
    config = model_config(next(iter(models.values())))
    style = args.style or ("stateful" if config["unidirectional"] else "windowed")
    name = args.name or os.path.splitext(os.path.basename(args.output))[0]
    meta = export(models, args.output, name=name, rate=args.rate, hop=args.hop, style=style,
                  context=args.context, step_frames=args.step, lookahead=args.lookahead)
    print(f"wrote {args.output}: {', '.join(targets)}; n_fft {meta['n_fft']}, hop {args.hop}, "
          f"{args.rate} Hz, {meta['channels']} channel(s), hidden {config['hidden']}, "
          f"{'unidirectional' if config['unidirectional'] else 'bidirectional'} LSTM, "
          f"{style}")
    error = check_export(models, args.output, meta)
    if error is None:
        print("onnxruntime is not installed: the export was not checked against PyTorch")
    else:
        print(f"ONNX Runtime vs PyTorch: largest error {error:.2e} of the estimates' peak")
        if error > 1e-4:
            fail("the exported graph does not reproduce the PyTorch model")
    print(f"Demix latency: {latency_text(meta)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
