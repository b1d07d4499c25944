#!/usr/bin/env python3
"""Export the streaming step graph of a trained checkpoint to ONNX with the Demix manifest.

Graph: inputs  mix [1, 2, 1025, 1] (linear magnitude of the newest frame), state_in [1, S]
       outputs masks [1, 4, 2, 1025, 1] (mask of frame m - L), state_out [1, S]
The manifest JSON goes into metadata_props["demix.manifest"].  The exported graph is verified in
onnxruntime against the full-sequence PyTorch model on a real clip, and its cost per call is
measured with one thread; a report is written next to the checkpoint (<run>/export_report.json).

Usage: export.py [--ckpt work/run/best.pt] [--out ../default.onnx] [--clip some.wav]
"""
import argparse
import json
import os
import sys
import time

import numpy as np
import soundfile as sf
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from model import load_net, shipped_net, StepWrapper, engine_stft, count_params, SOURCES, SR, N_FFT, HOP  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


# Time constant of the engine's stereo Wiener post-filter that the manifest asks for (seconds;
# chosen on held-out synthetic songs, see MODEL_CARD.md).
STEREO_WIENER_S = 2.3
# EM steps per frame of that post-filter (0: none; chosen on held-out synthetic songs).
STEREO_WIENER_EM_STEPS = 3
# Whether the exported graph averages the masks of the input and of its channel-swapped copy
# (model.ChannelSwapAverage; chosen on held-out synthetic songs, see MODEL_CARD.md).
CHANNEL_SWAP_TTA = 1
# Input-level normaliser of the exported graph (model.InputLevelNormaliser): the range of tracked
# RMS levels (dBFS) the network's input is kept within (None: no normaliser), and the level
# tracker's time constant (s).
INPUT_LEVEL_DBFS = (-44.0, -17.0)
INPUT_LEVEL_TIME_CONSTANT_S = 4.0


def manifest(net, name="demix-default", stereo_wiener_s=STEREO_WIENER_S, em_steps=STEREO_WIENER_EM_STEPS):
    man = {
        "format_version": 1,
        "name": name,
        "sample_rate": SR,
        "n_fft": N_FFT,
        "hop": HOP,
        "window": "hann",
        "channels": 2,
        "sources": SOURCES,
        "input": {"name": "mix", "kind": "magnitude", "bins": N_FFT // 2 + 1},
        "output": {"name": "masks", "kind": "mask"},
        "renormalize_masks": True,
        "fallback_source": "other",
        "streaming": {
            "style": "stateful",
            "lookahead_frames": net.L,
            "state": [{"input": "state_in", "output": "state_out", "shape": [1, net.state_size()]}],
        },
    }
    if stereo_wiener_s > 0:
        man["stereo_wiener"] = {"time_constant_s": stereo_wiener_s}
        if em_steps > 0:
            man["stereo_wiener"]["em_steps"] = em_steps
    return man


def one_thread_session(path):
    """An onnxruntime session on one CPU thread, run sequentially: the setting every cost figure uses."""
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def clip_magnitude(clip=None, seconds=6.0):
    """Engine-STFT magnitude [1, 2, F, T] of the first `seconds` of a clip, and the clip's name.

    Without a clip: the mixture of the first song in work/corpus, or seeded noise if there is none."""
    if clip is None:
        corpus = os.path.join(HERE, "work", "corpus")
        cands = sorted(os.path.join(corpus, d) for d in os.listdir(corpus)
                       if not d.endswith(".part")) if os.path.isdir(corpus) else []
        if cands:
            x = sum(sf.read(os.path.join(cands[0], s + ".flac"), dtype="float32", always_2d=True)[0] for s in SOURCES)
        else:
            x = np.random.default_rng(0).normal(0, 0.1, (int(SR * seconds), 2)).astype(np.float32)
        clip = cands[0] if cands else "noise"
    else:
        x, _ = sf.read(clip, dtype="float32", always_2d=True)
    x = torch.from_numpy(x[: int(SR * seconds)].T.copy())
    return engine_stft(x).abs()[None], clip


def cost_per_call_ms(sess, magn, calls, warmup=50):
    """Milliseconds of each of `calls` step calls of a session, fed the frames of `magn` [1, 2, F, T] in turn
    with its state carried, after `warmup` untimed calls."""
    S = next(i.shape[1] for i in sess.get_inputs() if i.name == "state_in")
    T = magn.shape[-1]
    state = np.zeros((1, S), np.float32)
    for t in range(warmup):
        _, state = sess.run(None, {"mix": magn[..., t % T:t % T + 1], "state_in": state})
    times = []
    for i in range(calls):
        fr = magn[..., i % T:i % T + 1]
        t0 = time.perf_counter()
        _, state = sess.run(None, {"mix": fr, "state_in": state})
        times.append(time.perf_counter() - t0)
    return np.array(times) * 1000


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ckpt", default=None)
    ap.add_argument("--run", default=os.path.join(HERE, "work", "run"))
    ap.add_argument("--out", default=os.path.normpath(os.path.join(HERE, "..", "default.onnx")))
    ap.add_argument("--clip", default=None, help="wav used for the step-vs-full check")
    ap.add_argument("--seconds", type=float, default=6.0)
    ap.add_argument("--bench-calls", type=int, default=3000)
    ap.add_argument("--stereo-wiener", type=float, default=STEREO_WIENER_S,
                    help="time constant (s) of the engine's stereo Wiener post-filter the manifest asks for; 0: none")
    ap.add_argument("--stereo-wiener-em-steps", type=int, default=STEREO_WIENER_EM_STEPS,
                    help="EM steps per frame of that post-filter (0: none)")
    ap.add_argument("--channel-swap-tta", type=int, choices=(0, 1), default=CHANNEL_SWAP_TTA,
                    help="1: the graph averages the masks of the input and of its channel-swapped copy (twice the cost); 0: one pass")
    ap.add_argument("--input-level", type=float, nargs=2, default=INPUT_LEVEL_DBFS, metavar=("LO", "HI"),
                    help="keep the network's input within this range of tracked RMS levels (dBFS; LO = HI: a fixed target; "
                         "model.InputLevelNormaliser); default: %s" % (INPUT_LEVEL_DBFS,))
    ap.add_argument("--no-input-level", action="store_true", help="no input-level normaliser")
    ap.add_argument("--input-level-time-constant", type=float, default=INPUT_LEVEL_TIME_CONSTANT_S, metavar="S",
                    help="time constant (s) of the input-level tracker")
    a = ap.parse_args()
    if a.no_input_level:
        a.input_level = None
    torch.set_num_threads(2)
    ckpt = a.ckpt or (os.path.join(a.run, "best.pt") if os.path.exists(os.path.join(a.run, "best.pt"))
                      else os.path.join(a.run, "last.pt"))
    net, ck = load_net(ckpt)
    net = shipped_net(net, a.channel_swap_tta, a.input_level, a.input_level_time_constant).eval()
    S = net.state_size()
    wrap = StepWrapper(net).eval()
    mix0 = torch.rand(1, 2, N_FFT // 2 + 1, 1)
    st0 = torch.zeros(1, S)
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    tmp = a.out + ".tmp.onnx"
    torch.onnx.export(wrap, (mix0, st0), tmp, opset_version=17, input_names=["mix", "state_in"],
                      output_names=["masks", "state_out"], do_constant_folding=True)
    import onnx
    m = onnx.load(tmp)
    man = manifest(net, stereo_wiener_s=a.stereo_wiener, em_steps=a.stereo_wiener_em_steps)
    del m.metadata_props[:]
    p = m.metadata_props.add()
    p.key = "demix.manifest"
    p.value = json.dumps(man)
    m.producer_name = "demix-training"
    onnx.checker.check_model(m)
    onnx.save(m, a.out)
    os.remove(tmp)
    size = os.path.getsize(a.out)
    print("wrote", a.out, "%.2f MB" % (size / 1e6), "params", count_params(net), "state", S, "from", ckpt)

    # ---- verification on a real clip
    import onnxruntime as ort
    sess = one_thread_session(a.out)
    meta = sess.get_modelmeta().custom_metadata_map
    assert json.loads(meta["demix.manifest"]) == man
    mag, clip_name = clip_magnitude(a.clip, a.seconds)
    T = mag.shape[-1]
    with torch.no_grad():
        full = net(mag).numpy()
    L = net.L
    state = np.zeros((1, S), np.float32)
    outs = []
    magn = mag.numpy().astype(np.float32)
    for t in range(T):
        o, state = sess.run(None, {"mix": magn[..., t:t + 1], "state_in": state})
        outs.append(o)
    step = np.concatenate(outs, -1)
    diff = float(np.abs(step[..., L:] - full[..., :T - L]).max())
    print("step-vs-full max abs diff %.3g over %d frames of %s" % (diff, T - L, clip_name))

    # ---- cost per call, one thread
    times = cost_per_call_ms(sess, magn, a.bench_calls)
    hop_ms = HOP / SR * 1000
    rep = {"onnx": a.out, "checkpoint": ckpt, "bytes": size, "params": count_params(net), "state_size": S,
           "channel_swap_tta": a.channel_swap_tta,
           "input_level_dbfs": a.input_level, "input_level_time_constant_s": a.input_level_time_constant if a.input_level is not None else None, "lookahead_frames": L, "step_vs_full_max_abs_diff": diff, "verify_clip": clip_name if clip_name == "noise" else os.path.abspath(clip_name),
           "verify_frames": T - L, "cost_ms_mean": float(times.mean()), "cost_ms_p50": float(np.percentile(times, 50)),
           "cost_ms_p99": float(np.percentile(times, 99)), "cost_ms_min": float(times.min()), "bench_calls": int(a.bench_calls), "hop_ms": hop_ms,
           "cost_pct_of_hop_mean": float(times.mean() / hop_ms * 100), "cost_pct_of_hop_p99": float(np.percentile(times, 99) / hop_ms * 100),
           "train_state": {k: v for k, v in ck.get("state", {}).items() if k != "history"},
           "ort_version": ort.__version__, "manifest": man}
    print("cost per call (1 thread): mean %.3f ms, p50 %.3f, p99 %.3f ms = %.1f%% / %.1f%% of the %.2f ms hop" % (
        rep["cost_ms_mean"], rep["cost_ms_p50"], rep["cost_ms_p99"], rep["cost_pct_of_hop_mean"], rep["cost_pct_of_hop_p99"], hop_ms))
    with open(os.path.join(os.path.dirname(os.path.abspath(ckpt)), "export_report.json"), "w") as f:
        json.dump(rep, f, indent=1)
    if diff > 1e-3:
        print("WARNING: step graph does not match the full model")
        sys.exit(1)


if __name__ == "__main__":
    main()
