#!/usr/bin/env python3
"""Evaluate a Demix model on the dev set (/work/shared/eval/dev) exactly like the engine runs it.

ONNX mode (default): the streaming step graph runs frame by frame in onnxruntime (1 thread):
periodic Hann analysis (frame m = samples [m*hop-(n_fft-hop), m*hop+hop)), the output of call m is
the mask of frame m-L, masks renormalised to sum 1 over sources, inverse FFT with the dual
synthesis window w_s = w_a / sum_k w_a(n-k*hop)^2, overlap-add, output aligned with the input
(i.e. trimmed by the latency); when the manifest asks for the stereo Wiener post-filter
(`stereo_wiener`), the masks are refined by it exactly as `dsp/src/wiener.rs` does.  --ckpt runs the full-sequence PyTorch model instead (same result up
to ~1e-5, faster, for quick checks during training).

Metric: global SDR per stem and clip over both channels, only for non-silent reference stems
(clips.json `nonsilent`): 10 log10((sum s^2 + 1e-7) / (sum (s - s_hat)^2 + 1e-7)); mean per stem
over clips; overall = mean of the four stem means.  Baselines: mixture/4 and the oracle ideal
ratio mask |S_i| / sum_j |S_j| with the same STFT.

Usage: evaluate.py [--onnx ../default.onnx | --ckpt work/run/best.pt] [--dev /work/shared/eval/dev]
       [--json out.json] [--write-dir DIR]
"""
import argparse
import json
import os
import sys

import numpy as np
import soundfile as sf

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
SOURCES = ["vocals", "drums", "bass", "other"]
SR, N_FFT, HOP = 44100, 2048, 512
NB = N_FFT // 2 + 1


def hann(n):
    return (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n) / n)).astype(np.float64)


WA = hann(N_FFT)
_den = np.zeros(N_FFT)
for k in range(-(N_FFT // HOP), N_FFT // HOP + 1):
    idx = np.arange(N_FFT) - k * HOP
    ok = (idx >= 0) & (idx < N_FFT)
    _den[ok] += WA[idx[ok]] ** 2
WS = WA / _den


def analysis(x, n_frames):
    """x [C, N] -> complex [C, F, n_frames]; frame m covers x[m*hop-(n_fft-hop) : m*hop+hop]."""
    C, N = x.shape
    pad_l = N_FFT - HOP
    need = (n_frames - 1) * HOP + N_FFT
    xp = np.zeros((C, need))
    xp[:, pad_l:pad_l + N] = x[:, :max(0, min(N, need - pad_l))]
    idx = np.arange(n_frames)[:, None] * HOP + np.arange(N_FFT)[None, :]
    fr = xp[:, idx] * WA  # C, T, N_FFT
    return np.fft.rfft(fr, axis=-1).transpose(0, 2, 1)


def synthesis(Y, N):
    """Y [..., C, F, T] -> [..., C, N] by overlap-add with the dual window, aligned with the input."""
    fr = np.fft.irfft(np.moveaxis(Y, -1, -2), n=N_FFT, axis=-1) * WS  # ..., C, T, N_FFT
    T = fr.shape[-2]
    pad_l = N_FFT - HOP
    out = np.zeros(fr.shape[:-2] + ((T - 1) * HOP + N_FFT,))
    for m in range(T):
        out[..., m * HOP:m * HOP + N_FFT] += fr[..., m, :]
    return out[..., pad_l:pad_l + N]


def n_frames_for(N, L):
    # every output sample n needs the frames covering it: the last is floor((n + n_fft - hop)/hop)
    return (N - 1 + N_FFT - HOP) // HOP + 1


def manifest_of(path):
    """The demix.manifest of an ONNX file."""
    import onnx
    meta = {p.key: p.value for p in onnx.load(path, load_external_data=False).metadata_props}
    return json.loads(meta["demix.manifest"])


def run_onnx(path, mag):
    """mag [C, F, T] -> masks [S, C, F, T] via the streaming step graph (zero-fed L extra calls)."""
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    man = json.loads(sess.get_modelmeta().custom_metadata_map["demix.manifest"])
    L = man["streaming"]["lookahead_frames"]
    states = {s["input"]: np.zeros(s["shape"], np.float32) for s in man["streaming"]["state"]}
    outmap = {s["output"]: s["input"] for s in man["streaming"]["state"]}
    out_names = [o.name for o in sess.get_outputs()]
    C, F, T = mag.shape
    res = []
    for m in range(T + L):
        fr = mag[None, :, :, m:m + 1] if m < T else np.zeros((1, C, F, 1), np.float32)
        feeds = {man["input"]["name"]: fr.astype(np.float32)}
        feeds.update(states)
        outs = sess.run(None, feeds)
        for n, v in zip(out_names, outs):
            if n in outmap:
                states[outmap[n]] = v
            elif n == man["output"]["name"]:
                if m >= L:
                    res.append(v[0])
    return np.concatenate(res, -1), L


def run_torch(ckpt, mag, channel_swap_tta=None, input_level=True):
    """masks of a checkpoint's full-sequence network, wrapped as export.py ships it: through the
    channel-swap average unless channel_swap_tta is 0 (None: as export.py ships it), and through
    export.py's input-level normaliser unless input_level is False."""
    import torch
    from export import CHANNEL_SWAP_TTA, INPUT_LEVEL_DBFS, INPUT_LEVEL_TIME_CONSTANT_S
    from model import load_net, shipped_net
    torch.set_num_threads(2)
    net, _ = load_net(ckpt)
    net = shipped_net(net, CHANNEL_SWAP_TTA if channel_swap_tta is None else channel_swap_tta,
                      INPUT_LEVEL_DBFS if input_level else None, INPUT_LEVEL_TIME_CONSTANT_S).eval()
    with torch.no_grad():
        # append L zero frames like the streaming flush (the model's lookahead sees zeros at the end)
        mm = torch.from_numpy(mag[None].astype(np.float32))
        return net(mm)[0].numpy(), net.L


POWER_FLOOR, LOADING, BLOCK_BINS = 1e-12, 1e-6, 512


def wiener_filters(gain, L, R, Q):
    """Each source's 2 x 2 filter W_j = V_j (sum_k V_k + loading)^-1 with V_j = gain_j [[L_j, Q_j],
    [Q_j*, R_j]] (all [S, F]): its entries (w11, w12, w21, w22), each [S, F]."""
    c_ll, c_rr, c_lr = (gain * L).sum(0), (gain * R).sum(0), (gain * Q).sum(0)
    loading = LOADING * (c_ll + c_rr) + POWER_FLOOR
    c_ll, c_rr = c_ll + loading, c_rr + loading
    det = c_ll * c_rr - np.abs(c_lr) ** 2
    vl, vr, vq = gain * L, gain * R, gain * Q
    return ((vl * c_rr - vq * c_lr.conj()) / det, (vq * c_ll - vl * c_lr) / det,
            (vq.conj() * c_rr - vr * c_lr.conj()) / det, (vr * c_ll - vq.conj() * c_lr) / det)


def stereo_wiener(masks, X, time_constant_s, residual, em_steps=0):
    """The engine's stereo Wiener post-filter (dsp/src/wiener.rs): masks [S, 2, F, T] (sum 1),
    mix X [2, F, T] -> source spectra [S, 2, F, T]; source `residual` gets the mix minus the others.
    Each source's spatial covariance is a one-pole average over frames of its masked image's
    statistics, pooled over blocks of BLOCK_BINS bins; `em_steps` EM steps per frame then refine
    each source's power from its estimate's posterior second moment."""
    S, C, F, T = masks.shape
    past = np.exp(-1.0 / (time_constant_s * SR / HOP))
    new = 1.0 - past
    block = np.arange(F) // BLOCK_BINS
    count = np.bincount(block).astype(np.float64)
    B = len(count)

    def pooled(v):  # [S, F] -> per-block sums [S, B]
        if np.iscomplexobj(v):
            return pooled(v.real) + 1j * pooled(v.imag)
        return np.stack([np.bincount(block, weights=row, minlength=B) for row in v])

    lp, rp, pw = (np.tile(POWER_FLOOR * count, (S, 1)) for _ in range(3))
    cross = np.zeros((S, B), complex)
    out = np.zeros((S, C, F, T), complex)
    for m in range(T):
        xl, xr = X[0, :, m], X[1, :, m]
        ml, mr = masks[:, 0, :, m], masks[:, 1, :, m]
        yl, yr = ml * xl, mr * xr
        pl, pr = np.abs(yl) ** 2, np.abs(yr) ** 2
        lp = past * lp + new * pooled(pl + POWER_FLOOR)
        rp = past * rp + new * pooled(pr + POWER_FLOOR)
        cross = past * cross + new * pooled(yl * yr.conj())
        pw = past * pw + new * pooled(0.5 * (pl + pr) + POWER_FLOOR)
        # per bin, its block's sums (the block's size cancels in v_j R_j)
        L, R, Q, P = (v[:, block] for v in (lp, rp, cross, pw))
        gain = 0.5 * (ml + mr) * (0.5 * (np.abs(xl) ** 2 + np.abs(xr) ** 2)) / P
        w = wiener_filters(gain, L, R, Q)
        for _ in range(em_steps):
            # EM: each source's power from its posterior second moment, E|s|^2 = |s_hat|^2 +
            # tr(V - W V) with V = gain * [[L, Q], [Q*, R]]; then the filters again.
            sl, sr = w[0] * xl + w[1] * xr, w[2] * xl + w[3] * xr
            vl, vr, vq = gain * L, gain * R, gain * Q
            tr_wv = (w[0] * vl + w[1] * vq.conj() + w[2] * vq + w[3] * vr).real
            second = np.abs(sl) ** 2 + np.abs(sr) ** 2 + np.maximum(vl + vr - tr_wv, 0.0)
            gain = gain * second / np.maximum(vl + vr, POWER_FLOOR)
            w = wiener_filters(gain, L, R, Q)
        out[:, 0, :, m] = w[0] * xl + w[1] * xr
        out[:, 1, :, m] = w[2] * xl + w[3] * xr
    others = [s for s in range(S) if s != residual]
    out[residual] = X - out[others].sum(0)
    return out


def engine_settings(man, stereo_wiener_s=None, em_steps=None):
    """(post-filter time constant in s, 0 for none; its EM steps per frame; residual source index)
    of a manifest as the engine reads them; `stereo_wiener_s` and `em_steps` override the
    manifest's."""
    wiener = man.get("stereo_wiener", {})
    if stereo_wiener_s is None:
        stereo_wiener_s = wiener.get("time_constant_s", 0.0)
    if em_steps is None:
        em_steps = wiener.get("em_steps", 0)
    return stereo_wiener_s, em_steps, SOURCES.index(man.get("fallback_source", SOURCES[-1]))


def source_spectra(masks, X, stereo_wiener_s, residual, em_steps=0):
    """The engine's source spectra [S, 2, F, T] from renormalised masks and the mix X: the stereo
    Wiener post-filter (with `em_steps` EM refinements per frame) when `stereo_wiener_s` > 0, else
    the masks applied as they are."""
    if stereo_wiener_s > 0:
        return stereo_wiener(masks, X, stereo_wiener_s, residual, em_steps)
    return masks * X[None]


def energy_to_masks(masks, energy):
    """Share of one reference stem's STFT energy [2, F, T] that each mask of masks [S, 2, F, T] passes:
    a list of S fractions (how much of "other" the vocal mask takes, say)."""
    return [float((m * energy).sum() / energy.sum()) for m in masks]


def sdr(ref, est):
    return 10 * np.log10((np.sum(ref ** 2) + 1e-7) / (np.sum((ref - est) ** 2) + 1e-7))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--onnx", default=os.path.normpath(os.path.join(HERE, "..", "default.onnx")))
    ap.add_argument("--ckpt", default=None)
    ap.add_argument("--channel-swap-tta", type=int, choices=(0, 1), default=None,
                    help="--ckpt: 1 averages the masks of the input and of its channel-swapped copy, 0: one view (default: as export.py ships)")
    ap.add_argument("--no-input-level", action="store_true",
                    help="--ckpt: without the input-level normaliser export.py ships")
    ap.add_argument("--dev", default="/work/shared/eval/dev")
    ap.add_argument("--input-gain", type=float, default=1.0,
                    help="scale the magnitudes the network sees (not the mixture its masks apply to): how the model fares at other input levels")
    ap.add_argument("--json", default=None)
    ap.add_argument("--write-dir", default=None, help="write <clip>/<stem>.wav estimates here")
    ap.add_argument("--no-baselines", action="store_true")
    ap.add_argument("--stereo-wiener", type=float, default=None,
                    help="time constant (s) of the stereo Wiener post-filter; default: the ONNX manifest's (none with --ckpt); 0: off")
    ap.add_argument("--em-steps", type=int, default=None,
                    help="EM steps per frame of the stereo Wiener post-filter; default: the ONNX manifest's (0 with --ckpt)")
    ap.add_argument("--confusion", action="store_true",
                    help="also print, per clip, the share of each reference stem's STFT energy that each mask passes")
    a = ap.parse_args()
    info = json.load(open(os.path.join(a.dev, "clips.json")))
    wiener_s, em_steps, residual = engine_settings({} if a.ckpt else manifest_of(a.onnx), a.stereo_wiener, a.em_steps)
    print("stereo Wiener post-filter: %s" % ("%g s, %d EM steps" % (wiener_s, em_steps) if wiener_s > 0 else "off"), file=sys.stderr)
    rows = {"model": {s: [] for s in SOURCES}, "mixture/4": {s: [] for s in SOURCES}, "oracle IRM": {s: [] for s in SOURCES}}
    per_clip = {}
    for clip in info["clips"]:
        cid = clip["id"]
        d = os.path.join(a.dev, cid)
        mix, sr = sf.read(os.path.join(d, "mixture.wav"), dtype="float64", always_2d=True)
        assert sr == SR
        mix = mix.T
        N = mix.shape[1]
        refs = np.stack([sf.read(os.path.join(d, s + ".flac"), dtype="float64", always_2d=True)[0].T[:, :N] for s in SOURCES])
        T = n_frames_for(N, 0)
        X = analysis(mix, T)  # C,F,T
        mag = (np.abs(X) * a.input_gain).astype(np.float32)
        if a.ckpt:
            masks, L = run_torch(a.ckpt, mag, a.channel_swap_tta, not a.no_input_level)
        else:
            masks, L = run_onnx(a.onnx, mag)
        masks = masks.astype(np.float64)
        masks = masks / np.maximum(masks.sum(0, keepdims=True), 1e-8)
        est = synthesis(source_spectra(masks, X, wiener_s, residual, em_steps), N)
        ests = {"model": est, "mixture/4": np.stack([mix / 4] * 4)}
        if not a.no_baselines or a.confusion:
            R = analysis(refs.reshape(-1, N), T).reshape(4, 2, NB, T)
        if not a.no_baselines:
            irm = np.abs(R) / np.maximum(np.abs(R).sum(0, keepdims=True), 1e-10)
            ests["oracle IRM"] = synthesis(irm * X[None], N)
        per_clip[cid] = {}
        if a.confusion:
            energy = np.abs(R) ** 2
            share = {s: energy_to_masks(masks, energy[i]) for i, s in enumerate(SOURCES) if s in clip["nonsilent"]}
            per_clip[cid]["energy_to_masks"] = share
            for s, row in share.items():
                print("%s %-6s energy -> masks %s" % (cid, s, " ".join("%s %.2f" % kv for kv in zip(SOURCES, row))), file=sys.stderr)
        for name, e in ests.items():
            per_clip[cid][name] = {}
            for i, s in enumerate(SOURCES):
                if s in clip["nonsilent"]:
                    v = sdr(refs[i], e[i])
                    rows[name][s].append(v)
                    per_clip[cid][name][s] = v
        if a.write_dir:
            os.makedirs(os.path.join(a.write_dir, cid), exist_ok=True)
            for i, s in enumerate(SOURCES):
                sf.write(os.path.join(a.write_dir, cid, s + ".wav"), est[i].T, SR, subtype="FLOAT")
        print(cid, " ".join("%s %.2f" % (s, v) for s, v in per_clip[cid]["model"].items()), file=sys.stderr)
    table = {}
    lines = ["| | vocals | drums | bass | other | overall |", "|---|---|---|---|---|---|"]
    for name, r in rows.items():
        if not any(r.values()):
            continue
        means = [float(np.mean(r[s])) if r[s] else float("nan") for s in SOURCES]
        overall = float(np.nanmean(means))
        table[name] = dict(zip(SOURCES, means), overall=overall)
        label = name if name != "model" else ("model (%s)" % os.path.basename(a.ckpt or a.onnx))
        lines.append("| %s | %s | %.2f |" % (label, " | ".join("%.2f" % v for v in means), overall))
    print("\n".join(lines))
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"table": table, "per_clip": per_clip, "model": a.ckpt or a.onnx, "stereo_wiener_s": wiener_s, "stereo_wiener_em_steps": em_steps}, f, indent=1)


if __name__ == "__main__":
    main()
