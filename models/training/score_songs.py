#!/usr/bin/env python3
"""Score exported models on whole generated songs (never the dev set) the way the engine runs
them: the ONNX step graph frame by frame, then the stereo Wiener post-filter each model's manifest
asks for (and, beside it, the plain masks). Each song gives one 10-s window starting 4 s in, at a
random level (peak -18..-1 dBFS, seeded by the song's folder name); global SDR per stem over both
channels, for stems holding at least 0.1 % of the mixture's energy; the table gives per-stem means
over songs and their mean. Used to choose between checkpoints on a corpus none of them trained on,
e.g. the 40 songs of a fresh seed:

    generate_corpus.py --out work/corpus_s7 --songs 40 --seed 7
    score_songs.py --corpus work/corpus_s7 ../default.onnx work/candidate.onnx
"""
import argparse
import glob
import os
import sys
import zlib

import numpy as np
import soundfile as sf

import evaluate as ev


def window(song, seconds=10.0, start=4.0):
    """The song's stems [S, 2, N] and mixture [2, N] over the scored window, or None if too short."""
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
    gain = 10 ** (np.random.RandomState(seed).uniform(-18, -1) / 20) / peak
    return refs * gain, mix * gain


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpus", required=True, help="folder of generated songs (every song is scored)")
    ap.add_argument("onnx", nargs="+")
    a = ap.parse_args()
    songs = sorted(d for d in glob.glob(os.path.join(a.corpus, "*")) if os.path.isdir(d) and not d.endswith(".part"))
    models = []
    for path in a.onnx:
        models.append((path,) + ev.engine_settings(ev.manifest_of(path)))
    scores = {(p, kind): {s: [] for s in ev.SOURCES} for p, _, _ in models for kind in ("engine", "plain")}
    for song in songs:
        cut = window(song)
        if cut is None:
            continue
        refs, mix = cut
        n = mix.shape[1]
        X = ev.analysis(mix, ev.n_frames_for(n, 0))
        for path, wiener_s, residual in models:
            masks, _ = ev.run_onnx(path, np.abs(X).astype(np.float32))
            masks = masks.astype(np.float64)
            masks /= np.maximum(masks.sum(0, keepdims=True), 1e-8)
            for kind, Y in (("engine", ev.source_spectra(masks, X, wiener_s, residual)),
                            ("plain", ev.source_spectra(masks, X, 0.0, residual))):
                est = ev.synthesis(Y, n)
                for i, s in enumerate(ev.SOURCES):
                    if np.sum(refs[i] ** 2) > 1e-3 * np.sum(mix ** 2):
                        scores[(path, kind)][s].append(ev.sdr(refs[i], est[i]))
        print(os.path.basename(song), file=sys.stderr, flush=True)
    print("| model | vocals | drums | bass | other | mean (as the engine runs it) | mean (plain masks) |")
    print("|---|---|---|---|---|---|---|")
    for path, _, _ in models:
        per = [float(np.mean(scores[(path, "engine")][s])) for s in ev.SOURCES]
        plain = float(np.mean([np.mean(scores[(path, "plain")][s]) for s in ev.SOURCES]))
        print("| %s | %s | %.2f | %.2f |" % (path, " | ".join("%.2f" % v for v in per), np.mean(per), plain))


if __name__ == "__main__":
    main()
