#!/usr/bin/env python3
"""Give a BandSplitNet checkpoint more lookahead frames (--lookahead), keeping what it computes, so
a network that sees further ahead can continue from trained weights (`train.py --init OUT.pt
--lookahead NEW`) instead of starting over.

The lookahead enters the band-split network in one place: the depthwise convolution over encoded
frames m-P .. m+L. Its taps for m-P .. m+L keep their weights and the new taps for frames
m+L+1 .. m+NEW start at zero, so the extended network computes the same masks, NEW - L frames
later (the engine's reported latency grows by (NEW - L) hops, read from the manifest). The only
difference is at the very start of a stream, where the causal blocks see NEW instead of L frames
before frame 0. The script prints how far the extended network's masks are from the original's on
held-out crops of a corpus (max and mean absolute difference, start of each crop excluded) before
writing.

Usage: extend_lookahead.py IN.pt OUT.pt --lookahead 4 --corpus work/corpus_s7
"""
import argparse

import torch

import train as tr
from model import build_net, load_net


def extend(old, lookahead):
    """A BandSplitNet like `old` with `lookahead` frames of lookahead (see the module doc)."""
    cfg = {"arch": "bandsplit", "dim": old.D, "lookahead": lookahead}
    new = build_net(cfg)
    k_old = old.dw.weight.shape[-1]
    state = {k: v.clone() for k, v in old.state_dict().items()}
    dw = torch.zeros_like(new.dw.weight)
    dw[:, :, :k_old] = state["dw.weight"]
    state["dw.weight"] = dw
    new.load_state_dict(state)
    return new, cfg


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("src")
    ap.add_argument("out")
    ap.add_argument("--lookahead", type=int, required=True)
    ap.add_argument("--corpus", required=True, help="a corpus whose held-out songs give the check's crops")
    a = ap.parse_args()
    old, ck = load_net(a.src)
    if ck["cfg"].get("arch") != "bandsplit":
        raise SystemExit("%s is not a BandSplitNet checkpoint" % a.src)
    if a.lookahead <= old.L:
        raise SystemExit("--lookahead %d is not more than the checkpoint's %d" % (a.lookahead, old.L))
    new, cfg = extend(old, a.lookahead)
    new.eval()
    torch.set_num_threads(2)
    val = tr.make_val(a.corpus, 4, 5.0)
    if val is None:
        raise SystemExit("%s has no held-out songs to check on" % a.corpus)
    with torch.no_grad():
        X, _ = tr.spectra(val[0], val[1])
        skip = 64  # frames at the start of each crop, where the stream start differs (module doc)
        diff = (new(X.abs()) - old(X.abs()))[..., skip:].abs()
    print("masks of the extended network vs the original on 4 held-out crops: max abs diff %.2e, mean %.2e" % (diff.max().item(), diff.mean().item()))
    state = {"lookahead_extended_from": {"path": a.src, "lookahead": old.L, "state": ck.get("state", {})}}
    torch.save({"model": new.state_dict(), "cfg": cfg, "state": state}, a.out)
    print("wrote %s: lookahead %d -> %d frames, %d parameters" % (a.out, old.L, a.lookahead, tr.count_params(new)))


if __name__ == "__main__":
    main()
