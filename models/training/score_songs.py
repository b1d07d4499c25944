#!/usr/bin/env python3
"""Score exported models on whole generated songs (never the dev set) the way the engine runs
them: the ONNX step graph frame by frame, then the stereo Wiener post-filter each model's manifest
asks for (and, beside it, the plain masks). Each song gives one 10-s window starting 4 s in, at a
random level (peak -18..-1 dBFS, seeded by the song's folder name); global SDR per stem over both
channels, for stems holding at least 0.1 % of the mixture's energy; the table gives per-stem means
over songs and their mean. Used to choose between checkpoints on a corpus none of them trained on,
e.g. the 40 songs of a fresh seed (--rms-range scores other input levels):

    generate_corpus.py --out work/corpus_s7 --songs 40 --seed 7
    score_songs.py --corpus work/corpus_s7 ../default.onnx work/candidate.onnx

--split KEY adds one table for the songs whose meta.json sets KEY (e.g. tracker, other_lead) and
one for the rest; --group-by KEY one table per value of KEY (e.g. vocals: the lead singer's kind;
vocal_register), in the order first met; --confusion adds, per model, the share of each stem's
energy each mask passes (how much of "other" the vocal mask takes, say).
"""
import argparse
import collections
import glob
import json
import os
import sys
import zlib

import numpy as np
import soundfile as sf

import evaluate as ev


def window(song, seconds=10.0, start=4.0, rms_range=None):
    """The song's stems [S, 2, N] and mixture [2, N] over the scored window, or None if too short.
    Level: a random peak of -18..-1 dBFS (the training range), or with `rms_range` (lo, hi) a
    random RMS level in that range of dBFS; either seeded by the song's folder name."""
    stems = [sf.read(os.path.join(song, s + ".flac"), dtype="float64", always_2d=True)[0].T for s in ev.SOURCES]
    length = min(x.shape[1] for x in stems)
    i0 = int(start * ev.SR)
    n = min(int(seconds * ev.SR), length - i0)
    if n < 3 * ev.SR:
        return None
    refs = np.stack([x[:, i0:i0 + n] for x in stems])
    mix = refs.sum(0)
    peak = np.abs(mix).max()
    if peak <= 0:
        return None
    seed = zlib.crc32(os.path.basename(os.path.normpath(song)).encode())
    if rms_range is None:
        gain = 10 ** (np.random.RandomState(seed).uniform(-18, -1) / 20) / peak
    else:
        gain = 10 ** (np.random.RandomState(seed).uniform(*rms_range) / 20) / np.sqrt(np.mean(mix ** 2))
    return refs * gain, mix * gain


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpus", required=True, help="folder of generated songs (every song is scored)")
    ap.add_argument("--group-by", default=None, metavar="KEY",
                    help="also print one table per value of KEY in the songs' meta.json (e.g. vocals, vocal_register)")
    ap.add_argument("--split", default=None, metavar="KEY",
                    help="also print the table for the songs whose meta.json has KEY set and for the rest (e.g. tracker, other_lead)")
    ap.add_argument("--confusion", action="store_true",
                    help="also print, per model, the mean share of each stem's STFT energy that each mask passes")
    ap.add_argument("--rms-range", type=float, nargs=2, default=None, metavar=("LO", "HI"),
                    help="set each window to a random RMS level in LO..HI dBFS instead of a random peak of -18..-1 dBFS")
    ap.add_argument("--em-steps", type=int, nargs="*", default=[], metavar="K",
                    help="also score the stereo Wiener post-filter with K EM steps per frame (one table row per K)")
    ap.add_argument("onnx", nargs="+")
    a = ap.parse_args()
    songs = sorted(d for d in glob.glob(os.path.join(a.corpus, "*")) if os.path.isdir(d) and not d.endswith(".part"))
    models = []
    for path in a.onnx:
        models.append((path,) + ev.engine_settings(ev.manifest_of(path)))
    groups = ["all"] + (["with " + a.split, "without " + a.split] if a.split else [])
    n_songs = collections.Counter()
    kinds = ["engine", "plain"] + ["em%d" % k for k in a.em_steps]
    scores = collections.defaultdict(lambda: {s: [] for s in ev.SOURCES})
    shares = {(p, i): [] for p, *_ in models for i in range(4)}
    for song in songs:
        cut = window(song, rms_range=a.rms_range)
        if cut is None:
            continue
        refs, mix = cut
        song_groups = ["all"]
        if a.split or a.group_by:
            with open(os.path.join(song, "meta.json")) as f:
                meta = json.load(f)
            if a.split:
                song_groups.append(groups[1] if meta.get(a.split) else groups[2])
            if a.group_by:
                group = "%s = %s" % (a.group_by, meta.get(a.group_by))
                if group not in groups:
                    groups.append(group)
                song_groups.append(group)
        for g in song_groups:
            n_songs[g] += 1
        n = mix.shape[1]
        T = ev.n_frames_for(n, 0)
        X = ev.analysis(mix, T)
        audible = [np.sum(refs[i] ** 2) > 1e-3 * np.sum(mix ** 2) for i in range(4)]
        energy = np.abs(ev.analysis(refs.reshape(-1, n), T).reshape(4, 2, -1, T)) ** 2 if a.confusion else None
        for path, wiener_s, em_steps, residual in models:
            masks, _ = ev.run_onnx(path, np.abs(X).astype(np.float32))
            masks = masks.astype(np.float64)
            masks /= np.maximum(masks.sum(0, keepdims=True), 1e-8)
            spectra = [("engine", ev.source_spectra(masks, X, wiener_s, residual, em_steps)),
                       ("plain", ev.source_spectra(masks, X, 0.0, residual))]
            spectra += [("em%d" % k, ev.source_spectra(masks, X, wiener_s, residual, k)) for k in a.em_steps]
            for kind, Y in spectra:
                est = ev.synthesis(Y, n)
                for i, s in enumerate(ev.SOURCES):
                    if audible[i]:
                        for g in song_groups:
                            scores[(g, path, kind)][s].append(ev.sdr(refs[i], est[i]))
            if a.confusion:
                for i in range(4):
                    if audible[i]:
                        shares[(path, i)].append(ev.energy_to_masks(masks, energy[i]))
        print(os.path.basename(song), file=sys.stderr, flush=True)
    for g in groups:
        if g != "all":
            print("\nSongs %s (%d):" % (g, n_songs[g]))
        print("| model | vocals | drums | bass | other | mean (as the engine runs it) | mean (plain masks) |")
        print("|---|---|---|---|---|---|---|")
        for path, *_ in models:
            per = [float(np.mean(scores[(g, path, "engine")][s])) for s in ev.SOURCES]
            plain = float(np.mean([np.mean(scores[(g, path, "plain")][s]) for s in ev.SOURCES]))
            print("| %s | %s | %.2f | %.2f |" % (path, " | ".join("%.2f" % v for v in per), np.mean(per), plain))
            for k in a.em_steps:
                per = [float(np.mean(scores[(g, path, "em%d" % k)][s])) for s in ev.SOURCES]
                print("| %s, post-filter with %d EM step(s) | %s | %.2f | |" % (path, k, " | ".join("%.2f" % v for v in per), np.mean(per)))
    if a.confusion:
        print("\nShare of each stem's STFT energy that each mask passes (mean over songs where the stem is audible):")
        print("| model | stem | %s |" % " | ".join(s + " mask" for s in ev.SOURCES))
        print("|---|---|---|---|---|---|")
        for path, *_ in models:
            for i, s in enumerate(ev.SOURCES):
                print("| %s | %s | %s |" % (path, s, " | ".join("%.3f" % v for v in np.mean(shares[(path, i)], axis=0))))


if __name__ == "__main__":
    main()
