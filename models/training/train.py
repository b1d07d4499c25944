#!/usr/bin/env python3
"""Train the Demix default model on the synthetic corpus (see generate_corpus.py).

Checkpoints every --ckpt-minutes to <run>/last.pt (and <run>/best.pt by validation loss) and
resumes from last.pt when restarted.  The learning rate follows a cosine decay over the time budget
(--budget-minutes of *training* time, accumulated across restarts), so a run can be stopped and
resumed freely.  Validation: a fixed set of natural (un-remixed) crops from held-out songs
(song index % 25 == 0), loss + spectral SDR per stem.

Usage: train.py --corpus work/corpus --run work/run --budget-minutes 90
"""
import argparse
import glob
import json
import math
import os
import random
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import soundfile as sf
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from model import shipped_net, build_net, engine_stft, count_params, SOURCES, N_FFT, HOP, SR  # noqa: E402
from export import INPUT_LEVEL_TIME_CONSTANT_S  # noqa: E402

CTX = N_FFT - HOP  # real audio before a crop, so the first frame has no artificial zeros


def log(*a):
    print(time.strftime("%H:%M:%S"), *a, flush=True)


def is_val(song_dir):
    try:
        return int(os.path.basename(song_dir).split("_")[-1]) % 25 == 0
    except ValueError:
        return False


def list_songs(corpus):
    return sorted(os.path.dirname(p) for p in glob.glob(os.path.join(corpus, "*", "meta.json")) if ".part" not in p)


def load_song(d):
    """The song's four stems as int16 [4, 2, n]; each stem is `<source>.flac` (what the generator
    writes) or `<source>.ogg` (a lossy copy, e.g. to move a corpus to a machine with a GPU)."""
    stems = []
    for s in SOURCES:
        path = os.path.join(d, s + ".flac")
        if not os.path.exists(path):
            path = os.path.join(d, s + ".ogg")
        x, sr = sf.read(path, dtype="int16", always_2d=True)
        stems.append(x.T.copy())
    n = min(x.shape[1] for x in stems)
    return np.stack([x[:, :n] for x in stems])  # [4, 2, n] int16


def try_load_song(d):
    """load_song, or None (logged) when the song cannot be read."""
    try:
        return load_song(d)
    except Exception as e:
        log("load failed", d, e)
        return None


class Cache:
    """Training songs held in memory as int16 tensors [4, 2, n] on the training device."""

    def __init__(self, corpus, max_songs, rng, device, newest_first=True):
        self.corpus, self.max_songs, self.rng, self.device = corpus, max_songs, rng, device
        self.newest_first = newest_first
        self.songs = {}

    def refresh(self, n_replace):
        all_train = [d for d in list_songs(self.corpus) if not is_val(d)]
        new = [d for d in all_train if d not in self.songs]
        self.rng.shuffle(new)
        # newest_first: the newest songs get in first (a corpus still being generated reaches
        # training as it grows); else random ones, so a finished corpus is drawn from evenly.
        # Random ones are evicted when full.
        if self.newest_first:
            new.sort(key=lambda d: os.path.getmtime(os.path.join(d, "meta.json")), reverse=True)
        add = new[:max(n_replace, self.max_songs - len(self.songs))]
        with ThreadPoolExecutor(max(1, min(16, os.cpu_count() or 1))) as pool:
            loaded = list(pool.map(try_load_song, add))
        for d, song in zip(add, loaded):
            if song is None:
                continue
            if len(self.songs) >= self.max_songs:
                del self.songs[self.rng.choice(list(self.songs))]
            self.songs[d] = torch.from_numpy(song).to(self.device)
        self.keys = list(self.songs)
        return len(self.keys), len(all_train)


def sample_batch(cache, rng, batch, seconds):
    """Random training crops on the cache's device: 40 % of the examples keep one song's stems
    together, the others remix stems from different songs; per stem a gain of -6..+3 dB, a
    channel swap half of the time and silence 10 % of the time; the mixture peak is set to
    -18..-0.5 dBFS. Returns the mixtures [B, 2, n] and the stems [B, 4, 2, n]."""
    n = int(seconds * SR) + CTX
    stems = torch.zeros(batch, 4, 2, n, device=cache.device)
    gains = torch.empty(batch, 4)
    levels = torch.empty(batch)
    for b in range(batch):
        same = rng.random() < 0.4
        base = cache.songs[rng.choice(cache.keys)]
        off0 = rng.randrange(max(1, base.shape[2] - n))
        for i in range(4):
            if same:
                src, off = base, off0
            else:
                src = cache.songs[rng.choice(cache.keys)]
                off = rng.randrange(max(1, src.shape[2] - n))
            x = src[i, :, off:off + n]
            if rng.random() < 0.5:
                x = x.flip(0)
            stems[b, i, :, :x.shape[1]] = x
            g = 10 ** (rng.uniform(-6, 3) / 20)
            gains[b, i] = 0.0 if rng.random() < 0.1 else g / 32768.0
        levels[b] = 10 ** (rng.uniform(-18, -0.5) / 20)
    stems *= gains.to(cache.device)[:, :, None, None]
    silent = stems.abs().sum(dim=(1, 2, 3)) == 0
    if silent.any():
        stems[silent, 3] = 1e-4 * torch.randn_like(stems[silent, 3])
    mix = stems.sum(1)
    peak = mix.abs().amax(dim=(1, 2)) + 1e-8
    scale = (levels.to(cache.device) / peak)[:, None, None]
    return mix * scale, stems * scale[:, None]


def spectra(mix, targets):
    S = engine_stft(targets)[..., 3:]      # B,4,2,F,T; drop frames that include the zero padding
    X = S.sum(dim=1)                       # the STFT is linear: mixture spectrum = sum of the stems'
    return X, S


@torch.no_grad()
def prep_targets(X, S):
    """Level-normalised real tensors used by loss_fn (constants, no grad)."""
    scale = X.abs().mean(dim=(1, 2, 3), keepdim=True) + 1e-6          # B,1,1,1
    Xn = X / scale
    Sn = S / scale[:, None]
    return (Xn.abs()[:, None], Xn.real[:, None].contiguous(), Xn.imag[:, None].contiguous(),
            Sn.abs(), Sn.real.contiguous(), Sn.imag.contiguous())


def sdr_loss(masks, T):
    """Negative spectral SDR per (example, source), mixture phase; ~ the global SDR of the metric
    (the STFT is a tight frame, so spectral and time-domain errors agree up to edge effects).
    eps = SDR_EPS x the mixture energy keeps silent stems defined and bounds their weight (with a
    tiny eps a silent stem's leakage dominates the loss and the model learns to mute whole sources)."""
    Xa, Xr, Xi, Sa, Sr, Si = T
    dr = masks * Xr - Sr
    di = masks * Xi - Si
    den = (dr * dr + di * di).sum(dim=(2, 3, 4))
    num = (Sr * Sr + Si * Si).sum(dim=(2, 3, 4))
    eps = SDR_EPS * (Xa * Xa).sum(dim=(2, 3, 4))
    sdr = 10 * torch.log10((num + eps) / (den + eps))                # B,4
    return -(sdr * SOURCE_WEIGHTS).mean() / 10


LOSS = "sdr"
SDR_EPS = 0.025
SOURCE_WEIGHTS = torch.ones(4)  # per-source weights of the SDR loss, normalised to mean 1, on the training device


def loss_fn(masks, T):
    if LOSS == "sdr":
        return sdr_loss(masks, T)
    return l1_loss(masks, T)


def l1_loss(masks, T):
    """L1 on masked magnitudes + L1 on the complex estimate (mixture phase), level-normalised."""
    Xa, Xr, Xi, Sa, Sr, Si = T
    l_mag = (masks * Xa - Sa).abs().mean()
    dr = masks * Xr - Sr
    di = masks * Xi - Si
    l_cplx = torch.sqrt(dr * dr + di * di + 1e-10).mean()
    return l_mag + l_cplx


def spec_sdr(masks, X, S):
    est = masks * X[:, None]
    num = (S.abs() ** 2).sum(dim=(2, 3, 4))
    den = ((S - est).abs() ** 2).sum(dim=(2, 3, 4))
    return 10 * torch.log10((num + 1e-7) / (den + 1e-7)), num  # B,4


def make_val(corpus, n_crops, seconds, seed=1234):
    rng = random.Random(seed)
    vals = [d for d in list_songs(corpus) if is_val(d)]
    if not vals:
        return None
    n = int(seconds * SR) + CTX
    mixes, tgts = [], []
    for k in range(n_crops):
        st = load_song(vals[k % len(vals)]).astype(np.float32) / 32768.0
        off = rng.randrange(max(1, st.shape[2] - n))
        x = st[:, :, off:off + n]
        x = np.pad(x, ((0, 0), (0, 0), (0, n - x.shape[2])))
        mixes.append(x.sum(0)); tgts.append(x)
    return torch.from_numpy(np.stack(mixes)), torch.from_numpy(np.stack(tgts)), len(vals)


@torch.no_grad()
def validate(net, val):
    net.eval()
    mix, tgt = val[0], val[1]
    device = next(net.parameters()).device
    tot, sdrs, ws = 0.0, [], []
    for i in range(0, len(mix), 4):
        X, S = spectra(mix[i:i + 4].to(device), tgt[i:i + 4].to(device))
        m = net(X.abs())
        tot += loss_fn(m, prep_targets(X, S)).item() * len(X)
        sdr, num = spec_sdr(m, X, S)
        sdrs.append(sdr); ws.append(num)
    net.train()
    sdr = torch.cat(sdrs); active = torch.cat(ws) > 1e-3
    per = [(sdr[:, k][active[:, k]].mean().item() if active[:, k].any() else float("nan")) for k in range(4)]
    return tot / len(mix), per


def main():
    ap = argparse.ArgumentParser()
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--corpus", default=os.path.join(here, "work", "corpus"))
    ap.add_argument("--run", default=os.path.join(here, "work", "run"))
    ap.add_argument("--budget-minutes", type=float, default=90.0, help="training time (cosine LR horizon)")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--arch", default="net", choices=["net", "bandsplit"], help="full-spectrum Net or BandSplitNet")
    ap.add_argument("--dim", type=int, default=32, help="bandsplit: features per band")
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--lookahead", type=int, default=2)
    ap.add_argument("--cache-songs", type=int, default=500)
    ap.add_argument("--cache-order", default="newest", choices=["newest", "random"],
                    help="which songs not yet in memory enter it at each refresh: the newest first (a corpus still "
                         "being generated), or random ones (a finished corpus, drawn from evenly)")
    ap.add_argument("--ckpt-minutes", type=float, default=3.0)
    ap.add_argument("--val-minutes", type=float, default=6.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu", help="torch device to train on: cpu, or cuda where a GPU is present")
    ap.add_argument("--frame-stride", type=int, default=2, help="train the head/loss on every n-th frame")
    ap.add_argument("--loss", default="sdr", choices=["sdr", "l1"])
    ap.add_argument("--warmup", type=int, default=200)
    ap.add_argument("--sdr-eps", type=float, default=0.025, help="SDR loss eps, relative to the mixture energy")
    ap.add_argument("--source-weights", type=float, nargs=4, default=[1.0, 1.0, 1.0, 1.0], metavar=("VOCALS", "DRUMS", "BASS", "OTHER"),
                    help="sdr loss: weight of each source's term (normalised to mean 1)")
    ap.add_argument("--amp", action="store_true", help="run the network's forward pass in bfloat16 autocast (the STFT and the loss stay float32)")
    ap.add_argument("--init", default=None, help="warm-start weights from this checkpoint (new run)")
    ap.add_argument("--channel-swap-tta", action="store_true",
                    help="train and validate the masks export.py ships: the mean of the network's masks for the input and, "
                         "swapped back, for its channel-swapped copy (model.ChannelSwapAverage; twice the work per step)")
    ap.add_argument("--input-level", type=float, nargs=2, default=None, metavar=("LO", "HI"),
                    help="train and validate through an input-level normaliser (model.InputLevelNormaliser: the network's input "
                         "kept within this range of tracked RMS levels, dBFS); default: none, the network sees the random training levels")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    device = torch.device(a.device)
    global LOSS, SDR_EPS, SOURCE_WEIGHTS
    LOSS, SDR_EPS = a.loss, a.sdr_eps
    weights = torch.tensor(a.source_weights, dtype=torch.float32)
    SOURCE_WEIGHTS = (weights * 4 / weights.sum()).to(device)
    os.makedirs(a.run, exist_ok=True)
    rng = random.Random(int(time.time()))
    if a.arch == "bandsplit":
        cfg = {"arch": "bandsplit", "dim": a.dim, "lookahead": a.lookahead}
    else:
        cfg = {"hidden": a.hidden, "layers": a.layers, "lookahead": a.lookahead}
    run_cfg = {"loss": a.loss, "sdr_eps": a.sdr_eps, "batch": a.batch, "seconds": a.seconds, "lr": a.lr, "frame_stride": a.frame_stride,
               "source_weights": a.source_weights, "amp": a.amp, "channel_swap_tta": a.channel_swap_tta,
               "input_level": a.input_level}
    # On the device before the optimiser exists: a resumed optimiser state follows its parameters.
    net = build_net(cfg).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=a.lr)
    state = {"step": 0, "train_seconds": 0.0, "best": 1e9, "history": []}
    last = os.path.join(a.run, "last.pt")
    if os.path.exists(last):
        ck = torch.load(last, map_location="cpu")
        if ck.get("cfg") != cfg:
            sys.exit("%s was trained with config %s, not %s: pick another --run or delete it" % (last, ck.get("cfg"), cfg))
        net.load_state_dict(ck["model"]); opt.load_state_dict(ck["opt"]); state = ck["state"]
        log("resumed from", last, "step", state["step"], "trained %.1f min" % (state["train_seconds"] / 60))
    elif a.init:
        ck = torch.load(a.init, map_location="cpu")
        if ck.get("cfg") != cfg:
            sys.exit("%s holds a network with config %s, not %s: pass the matching --arch/--dim/--lookahead" % (a.init, ck.get("cfg"), cfg))
        net.load_state_dict(ck["model"])
        log("warm start from", a.init)
    log("params", count_params(net), "config", cfg, run_cfg, "device", device)
    # What the loss and validation see.
    shipped = shipped_net(net, a.channel_swap_tta, a.input_level, INPUT_LEVEL_TIME_CONSTANT_S)
    cache = Cache(a.corpus, a.cache_songs, rng, device, newest_first=a.cache_order == "newest")
    n_cached, n_train = cache.refresh(0)
    log("cache", n_cached, "of", n_train, "training songs")
    val = make_val(a.corpus, 16, 5.0)
    if val is not None:
        log("validation: 16 crops x 5 s from", val[2], "held-out songs")
    if state["step"] == 0 and a.init is None:
        # initialise the per-bin normalisation from data
        with torch.no_grad():
            mix, tgt = sample_batch(cache, rng, 16, 3.0)
            X, _ = spectra(mix, tgt)
            z = torch.log1p(X.abs() * net.in_scale)
            net.mu.copy_(z.mean(dim=(0, 3)))
            net.logsig.copy_(torch.log(z.std(dim=(0, 3)) + 0.1))
    budget = a.budget_minutes * 60
    t_ck = t_val = time.time()
    t_loop = time.time()
    losses = []
    while state["train_seconds"] < budget:
        frac = min(1.0, state["train_seconds"] / budget)
        warm = min(1.0, (state["step"] + 1) / a.warmup)
        lr = a.lr * warm * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * frac)))
        for g in opt.param_groups:
            g["lr"] = lr
        mix, tgt = sample_batch(cache, rng, a.batch, a.seconds)
        X, S = spectra(mix, tgt)
        # masks + loss on every other frame (random phase): the head and the loss dominate the cost
        sel = torch.arange(rng.randrange(a.frame_stride), X.shape[-1], a.frame_stride, device=device)
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=a.amp):
            m = shipped(X.abs(), sel)
        loss = loss_fn(m.float(), prep_targets(X[..., sel], S[..., sel]))
        opt.zero_grad()
        loss.backward()
        gn = torch.nn.utils.clip_grad_norm_(net.parameters(), 5.0)
        if not (torch.isfinite(loss) and torch.isfinite(gn)):
            log("non-finite loss/gradient at step %d: skipped" % state["step"])
            opt.zero_grad()
            continue
        opt.step()
        losses.append(loss.item())
        state["step"] += 1
        now = time.time()
        state["train_seconds"] += now - t_loop
        t_loop = now
        if state["step"] % 50 == 0:
            log("step %d loss %.4f lr %.2e (%.2f s/step, mean since the run began; %.1f/%.0f min)" % (
                state["step"], np.mean(losses), lr, (state["train_seconds"] / max(1, state["step"])),
                state["train_seconds"] / 60, a.budget_minutes))
            losses = []
        done = state["train_seconds"] >= budget
        if val is not None and (now - t_val > a.val_minutes * 60 or done):
            vl, per = validate(shipped, val)
            state["history"].append({"step": state["step"], "val_loss": vl, "sdr": per, "time": time.time()})
            log("VAL step %d loss %.4f spec-SDR %s mean %.2f" % (state["step"], vl, " ".join("%s %.2f" % (s, v) for s, v in zip(SOURCES, per)), float(np.nanmean(per))))
            if vl < state["best"]:
                state["best"] = vl
                torch.save({"model": net.state_dict(), "cfg": cfg, "state": state}, os.path.join(a.run, "best.pt"))
            t_val = time.time()
            n_cached, n_train = cache.refresh(max(20, a.cache_songs // 10))
            log("cache", n_cached, "of", n_train, "training songs")
            t_loop = time.time()
        if now - t_ck > a.ckpt_minutes * 60 or done:
            torch.save({"model": net.state_dict(), "opt": opt.state_dict(), "cfg": cfg, "state": state}, last + ".tmp")
            os.replace(last + ".tmp", last)
            t_ck = time.time()
            t_loop = time.time()
    log("done: step", state["step"], "train minutes %.1f" % (state["train_seconds"] / 60))
    with open(os.path.join(a.run, "train_summary.json"), "w") as f:
        json.dump({"step": state["step"], "train_minutes": state["train_seconds"] / 60, "cfg": cfg,
                   "params": count_params(net), "best_val_loss": state["best"],
                   "history": state["history"][-5:], "n_train_songs": len(list_songs(a.corpus))}, f, indent=1)


if __name__ == "__main__":
    main()
