#!/usr/bin/env python3
"""Grow a BandSplitNet checkpoint, keeping what it computes, so a larger network can continue from
trained weights (`train.py --init OUT.pt --dim NEW --lookahead NEW`) instead of starting over: more
features per band (--dim), more lookahead frames (--lookahead), or both (widened first).

Width: the old features keep their weights. Weights that write into a new feature (encoder
columns, the first pointwise conv and every block's output projection) start at zero, so the new
residual features start at zero; every RMS norm gain is scaled by sqrt(old/new), so the old
features are normalised as before; weights that only read new features or new hidden units start
small and random, so gradients reach the zero weights and the new units differ from each other.
The one term this cannot keep is the band-mixing bias, which is added to every feature: the new
features start at that bias instead of zero.

Lookahead: it enters the network in one place, the depthwise convolution over encoded frames
m-P .. m+L. Its taps for m-P .. m+L keep their weights and the new taps for m+L+1 .. m+NEW start
at zero, so the network computes the same masks NEW - L frames later (the engine's reported
latency grows by NEW - L hops, read from the manifest). The only difference is at the very start
of a stream, where the causal blocks see NEW instead of L frames before frame 0.

The script prints how far the grown network's masks are from the original's on held-out crops of
--corpus (max and mean absolute difference; with --lookahead, the first 64 frames of each crop
excluded) before writing.

Usage: widen.py IN.pt OUT.pt [--dim 64] [--lookahead 4] [--corpus work/corpus] [--seed 0]
"""
import argparse
import math
import os

import torch

import train as tr
from model import build_net, load_net

READ_SCALE = 0.05  # std of the new reading weights, relative to a fresh layer's


def widen(old, dim, gen):
    """A BandSplitNet with `dim` features per band that starts from `old` (see the module doc)."""
    cfg = {"arch": "bandsplit", "dim": dim, "lookahead": old.L}
    new = build_net(cfg)
    D = old.D
    g = math.sqrt(D / dim)

    def rand(shape, fan_in):
        return torch.randn(shape, generator=gen) * READ_SCALE / math.sqrt(fan_in)

    with torch.no_grad():
        for name in ["mu", "logsig", "skip_w", "skip_b"]:
            getattr(new, name).copy_(getattr(old, name))
        for k in range(len(old.enc_w)):
            new.enc_w[k].zero_()
            new.enc_w[k][:, :, :D] = old.enc_w[k]
            new.enc_b[k].zero_()
            new.enc_b[k][:, :, :D] = old.enc_b[k]
            w = old.dec_w[k]
            new.dec_w[k].copy_(rand(new.dec_w[k].shape, dim))
            new.dec_w[k][:, :D, :] = w
            new.dec_b[k].copy_(old.dec_b[k])
        for gain_new, gain_old in [(new.enc_g, old.enc_g)] + list(zip(new.norm_g, old.norm_g)) + list(zip(new.mix_g, old.mix_g)):
            gain_new.fill_(1.0)
            gain_new[:D] = gain_old * g
        # first depthwise + pointwise conv: new depthwise channels read only new (zero) features
        new.dw.weight.copy_(rand(new.dw.weight.shape, new.dw.weight.shape[-1]))
        new.dw.weight[:D] = old.dw.weight
        new.dw.bias.zero_()
        new.dw.bias[:D] = old.dw.bias
        new.pw.weight.copy_(rand(new.pw.weight.shape, dim))
        new.pw.weight[D:] = 0.0                      # writes new residual features
        new.pw.weight[:D, :D] = old.pw.weight
        new.pw.bias.zero_()
        new.pw.bias[:D] = old.pw.bias
        for c_new, c_old, p_new, p_old in zip(new.conv, old.conv, new.proj, old.proj):
            c_new.weight.copy_(torch.randn(c_new.weight.shape, generator=gen) / math.sqrt(3 * dim))  # new hidden units: a fresh layer's scale
            c_new.weight[:D, D:] = rand((D, dim - D, 3), 3 * dim)   # old hidden units reading new features
            c_new.weight[:D, :D] = c_old.weight
            c_new.bias.zero_()
            c_new.bias[:D] = c_old.bias
            p_new.weight.zero_()                     # new hidden units and new features start silent
            p_new.weight[:D, :D] = p_old.weight
            p_new.bias.zero_()
            p_new.bias[:D] = p_old.bias
        for m_new, m_old in zip(new.mix, old.mix):
            m_new.load_state_dict(m_old.state_dict())
    return new, cfg


def extend_lookahead(old, lookahead):
    """A BandSplitNet like `old` with `lookahead` frames of lookahead (see the module doc)."""
    cfg = {"arch": "bandsplit", "dim": old.D, "lookahead": lookahead}
    new = build_net(cfg)
    state = {k: v.clone() for k, v in old.state_dict().items()}
    dw = torch.zeros_like(new.dw.weight)
    dw[:, :, :state["dw.weight"].shape[-1]] = state["dw.weight"]
    state["dw.weight"] = dw
    new.load_state_dict(state)
    return new, cfg


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("src")
    ap.add_argument("out")
    ap.add_argument("--dim", type=int, help="features per band, more than the checkpoint's")
    ap.add_argument("--lookahead", type=int, help="lookahead frames, more than the checkpoint's")
    ap.add_argument("--corpus", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "work", "corpus"),
                    help="a corpus whose held-out songs give the check's crops")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    old, ck = load_net(a.src)
    if ck["cfg"].get("arch") != "bandsplit":
        raise SystemExit("%s is not a BandSplitNet checkpoint" % a.src)
    if a.dim is None and a.lookahead is None:
        raise SystemExit("nothing to grow: pass --dim and/or --lookahead")
    if a.dim is not None and a.dim <= old.D:
        raise SystemExit("--dim %d is not wider than the checkpoint's %d" % (a.dim, old.D))
    if a.lookahead is not None and a.lookahead <= old.L:
        raise SystemExit("--lookahead %d is not more than the checkpoint's %d" % (a.lookahead, old.L))
    val = tr.make_val(a.corpus, 4, 5.0)
    if val is None:
        raise SystemExit("%s has no held-out songs to check on" % a.corpus)
    new, cfg = old, ck["cfg"]
    if a.dim is not None:
        new, cfg = widen(new, a.dim, torch.Generator().manual_seed(a.seed))
    if a.lookahead is not None:
        new, cfg = extend_lookahead(new, a.lookahead)
    new.eval()
    torch.set_num_threads(2)
    with torch.no_grad():
        X, _ = tr.spectra(val[0], val[1])
        skip = 64 if a.lookahead is not None else 0  # a longer lookahead's stream start differs (module doc)
        diff = (new(X.abs()) - old(X.abs()))[..., skip:].abs()
    print("masks of the grown network vs the original on 4 held-out crops: max abs diff %.2e, mean %.2e" % (diff.max().item(), diff.mean().item()))
    state = {"grown_from": {"path": a.src, "dim": old.D, "lookahead": old.L, "state": ck.get("state", {})}}
    torch.save({"model": new.state_dict(), "cfg": cfg, "state": state}, a.out)
    print("wrote %s: dim %d -> %d, lookahead %d -> %d frames, %d parameters" % (a.out, old.D, new.D, old.L, new.L, tr.count_params(new)))


if __name__ == "__main__":
    main()
