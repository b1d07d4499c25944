#!/usr/bin/env python3
"""Compare checkpoints on held-out slices of the synthetic corpora (never the dev set): spectral
SDR per stem (mixture phase) on fixed validation crops (as train.py cuts them: song index % 25 ==
0, 5 s each), plus the uniform-mask (mixture/4) and oracle-IRM references.  Prints one table per
corpus and one over all crops pooled; the best pooled mean wins.

Each `--corpus DIR:CROPS` adds CROPS crops of DIR's held-out songs; give each corpus a share of
crops like its share of the training songs.  Default: work/corpus:16.

Usage: select_ckpt.py [--corpus DIR:CROPS ...] work/run2/last.pt work/run3/best.pt ...
"""
import argparse
import os

import numpy as np
import torch

import train as tr
from model import load_net

HERE = os.path.dirname(os.path.abspath(__file__))


def crops_of(spec):
    """The validation crops [mixtures, stems] of one `DIR:CROPS` argument."""
    folder, n = spec.rsplit(":", 1)
    val = tr.make_val(os.path.join(HERE, folder), int(n), 5.0)  # an absolute folder stays as it is
    if val is None:
        raise SystemExit("%s has no held-out songs" % folder)
    return folder, val[0], val[1]


def crop_sdrs(fn, mix, tgt):
    """Spectral SDR [crops, 4] of the masks fn(X, S); NaN where a reference stem is silent."""
    out = []
    for i in range(0, len(mix), 4):
        X, S = tr.spectra(mix[i:i + 4], tgt[i:i + 4])
        sdr, num = tr.spec_sdr(fn(X, S), X, S)
        out.append(torch.where(num > 1e-3, sdr, torch.full_like(sdr, float("nan"))))
    return torch.cat(out).numpy()


def summary(s):
    per = [float(np.nanmean(s[:, k])) for k in range(4)]
    return per, float(np.mean(per))


def table(title, rows):
    print("\n%s\n| checkpoint | vocals | drums | bass | other | mean |\n|---|---|---|---|---|---|" % title)
    for name, (per, mean) in rows:
        print("| %s | %s | %.2f |" % (name, " | ".join("%.2f" % v for v in per), mean))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpus", action="append", help="DIR:CROPS (repeatable; default work/corpus:16)")
    ap.add_argument("ckpts", nargs="+")
    a = ap.parse_args()
    torch.set_num_threads(2)
    sets = [crops_of(spec) for spec in (a.corpus or ["work/corpus:16"])]
    scorers = [("uniform", lambda X, S: torch.full((X.shape[0], 4) + X.shape[1:], 0.25)),
               ("oracle IRM", lambda X, S: S.abs() / (S.abs().sum(1, keepdim=True) + 1e-10))]
    for path in a.ckpts:
        net, _ = load_net(path)
        scorers.append((path, lambda X, S, net=net: net(X.abs())))
    scores = {}
    with torch.no_grad():
        for name, fn in scorers:
            scores[name] = [crop_sdrs(fn, mix, tgt) for _, mix, tgt in sets]
    for k, (folder, mix, _) in enumerate(sets):
        table("%s (%d crops)" % (folder, len(mix)), [(name, summary(s[k])) for name, s in scores.items()])
    pooled = [(name, summary(np.concatenate(s))) for name, s in scores.items()]
    if len(sets) > 1:
        table("pooled (%d crops)" % sum(len(m) for _, m, _ in sets), pooled)
    best = max(pooled[2:], key=lambda r: r[1][1], default=None)
    if best:
        print("BEST", best[0], "%.2f" % best[1][1])


if __name__ == "__main__":
    main()
