"""The Demix default separation network: full-sequence (training) and one-frame streaming step.

Input: linear STFT magnitude [B, 2, 1025, T] (n_fft 2048, hop 512, periodic Hann, unnormalised FFT).
Output: masks [B, 4, 2, 1025, T] (softmax over the 4 sources, so they already sum to 1).

Per frame: log1p compression + learned per-bin normalisation -> linear 2050 -> H (band mixing)
-> depthwise-separable conv over frames m-P .. m+L (the lookahead) with a residual
-> GRU (layers x H) with a residual -> linear head to 4 x 1025 logits shared by both channels
+ a per-(source, channel, bin) affine term of that channel's normalised log-magnitude
-> softmax over sources.

The streaming step keeps all state in one flat tensor [1, S]:
  [ encoded history (P+L) x H | normalised input history L x (2*1025) | GRU hidden layers x H ].
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as Fn

SR, N_FFT, HOP = 44100, 2048, 512
NB = N_FFT // 2 + 1
SOURCES = ["vocals", "drums", "bass", "other"]


def linear_scan(a, b, h0=None, chunk=16):
    """h_t = a_t * h_{t-1} + b_t along dim 1 of [B, T, H] (a in (0, 1)); chunked parallel form."""
    B, T, H = a.shape
    nC = (T + chunk - 1) // chunk
    pad = nC * chunk - T
    if pad:
        a = Fn.pad(a, (0, 0, 0, pad), value=1.0)
        b = Fn.pad(b, (0, 0, 0, pad))
    la = torch.log(a.clamp_min(1e-6)).reshape(B, nC, chunk, H)
    b = b.reshape(B, nC, chunk, H)
    cla = torch.cumsum(la, dim=2)                                   # B,nC,C,H
    diff = cla[:, :, :, None, :] - cla[:, :, None, :, :]            # [t, k] = sum_{k<j<=t} log a_j
    mask = torch.tril(torch.ones(chunk, chunk, dtype=torch.bool))
    M = torch.where(mask[None, None, :, :, None], torch.exp(diff.clamp_max(0.0)), torch.zeros((), dtype=a.dtype))
    local = (M * b[:, :, None, :, :]).sum(dim=3)                     # B,nC,C,H
    decay = torch.exp(cla)                                          # prod a from chunk start to t
    h = torch.zeros(B, H, dtype=a.dtype) if h0 is None else h0
    outs = []
    for i in range(nC):
        o = local[:, i] + decay[:, i] * h[:, None, :]
        outs.append(o)
        h = o[:, -1]
    y = torch.stack(outs, 1).reshape(B, nC * chunk, H)
    return y[:, :T]


class MinGRUBlock(nn.Module):
    """Pre-norm minimal GRU (gates depend on the input only) + MLP, both residual."""

    def __init__(self, h, mlp=384):
        super().__init__()
        self.norm = nn.LayerNorm(h)
        self.gates = nn.Linear(h, 2 * h)
        self.out = nn.Linear(h, h)
        self.norm2 = nn.LayerNorm(h)
        self.mlp1 = nn.Linear(h, mlp)
        self.mlp2 = nn.Linear(mlp, h)

    def _ab(self, x):
        zz, cand = self.gates(self.norm(x)).chunk(2, dim=-1)
        z = torch.sigmoid(zz)
        return 1 - z, z * cand

    def _post(self, x, h):
        y = x + self.out(h)
        return y + self.mlp2(Fn.gelu(self.mlp1(self.norm2(y))))

    def forward(self, x):  # B,T,H
        a, b = self._ab(x)
        return self._post(x, linear_scan(a, b))

    def step(self, x, h):  # x [1,1,H], h [1,H]
        a, b = self._ab(x)
        h2 = a[:, 0] * h + b[:, 0]
        return self._post(x, h2[:, None, :]), h2


class Net(nn.Module):
    def __init__(self, hidden=256, layers=2, lookahead=2, past=2, channels=2, bins=NB, sources=4, in_scale=1000.0):
        super().__init__()
        self.H, self.layers, self.L, self.P = hidden, layers, lookahead, past
        self.C, self.F, self.S = channels, bins, sources
        self.in_scale = in_scale
        self.mu = nn.Parameter(torch.zeros(channels, bins))
        self.logsig = nn.Parameter(torch.zeros(channels, bins))
        self.enc = nn.Linear(channels * bins, hidden)
        self.enc_norm = nn.LayerNorm(hidden)
        K = past + lookahead + 1
        self.dw = nn.Conv1d(hidden, hidden, K, groups=hidden)
        self.pw = nn.Conv1d(hidden, hidden, 1)
        self.rnn = nn.ModuleList([MinGRUBlock(hidden) for _ in range(layers)])
        self.head = nn.Linear(hidden, sources * bins)
        self.skip_w = nn.Parameter(torch.zeros(sources, channels, bins))
        self.skip_b = nn.Parameter(torch.zeros(sources, channels, bins))

    # ---------------------------------------------------------------- shared pieces
    def normalise(self, mag):  # [B, C, F, T] -> same
        z = torch.log1p(mag * self.in_scale)
        return (z - self.mu[None, :, :, None]) * torch.exp(-self.logsig.clamp(-3.0, 3.0))[None, :, :, None]

    def encode(self, z):  # [B, C, F, T] -> [B, T, H]
        B, C, F, T = z.shape
        x = z.permute(0, 3, 1, 2).reshape(B, T, C * F)
        return Fn.gelu(self.enc_norm(self.enc(x)))

    def masks_from(self, y, zc):  # y [B, T, H], zc [B, C, F, T] -> [B, S, C, F, T]
        B, T, _ = y.shape
        logits = self.head(y).reshape(B, T, self.S, 1, self.F).permute(0, 2, 3, 4, 1)  # B,S,1,F,T
        logits = logits + self.skip_w[None, :, :, :, None] * zc[:, None] + self.skip_b[None, :, :, :, None]
        # Softmax over the last axis: onnxruntime's kernel is much faster there than on axis 1.
        return torch.softmax(logits.permute(0, 2, 3, 4, 1), dim=-1).permute(0, 4, 1, 2, 3)

    # ---------------------------------------------------------------- full sequence
    def forward(self, mag, frames=None):
        """frames: optional index tensor of the frames whose masks are wanted (training speed-up)."""
        z = self.normalise(mag)
        e = self.encode(z)  # B,T,H
        T = e.shape[1]
        et = e.transpose(1, 2)
        # frames -L .. T-1, exactly like the streaming step whose first L calls see only zeros
        ep = Fn.pad(et, (self.P + self.L, self.L))
        c = Fn.pad(et, (self.L, 0)) + Fn.gelu(self.pw(self.dw(ep)))  # B,H,T+L
        c = c.transpose(1, 2)
        y = c
        for blk in self.rnn:
            y = blk(y)
        y = y[:, self.L:]
        if frames is not None:
            y, z = y[:, frames], z[..., frames]
        return self.masks_from(y, z)

    # ---------------------------------------------------------------- streaming
    def state_size(self):
        return (self.P + self.L) * self.H + self.L * self.C * self.F + self.layers * self.H

    def step(self, mag, state, tail=()):
        """mag [1, C, F, 1], state [1, S] -> masks [1, S, C, F, 1] of frame m-L, new state.
        `state` may run on past state_size() (a wrapper's numbers, not read here); the tensors
        in `tail` ([1, k] each) end the new state, in the same Concat."""
        H, L, P, C, F = self.H, self.L, self.P, self.C, self.F
        n_e = (P + L) * H
        n_z = L * C * F
        e_hist = state[:, :n_e].reshape(1, P + L, H)
        z_hist = state[:, n_e:n_e + n_z].reshape(1, L, C * F)
        h = state[:, n_e + n_z:n_e + n_z + self.layers * H].reshape(self.layers, 1, H)
        z = self.normalise(mag)  # 1,C,F,1
        zf = z.reshape(1, 1, C * F)
        e = self.encode(z)  # 1,1,H
        win = torch.cat([e_hist, e], dim=1)  # 1,P+L+1,H
        c = win[:, P:P + 1, :] + Fn.gelu(self.pw(self.dw(win.transpose(1, 2)))).transpose(1, 2)  # 1,1,H
        y = c
        hs = []
        for i, blk in enumerate(self.rnn):
            y, hi = blk.step(y, h[i])
            hs.append(hi)
        h2 = torch.stack(hs, 0)
        zc = z_hist[:, 0:1, :].reshape(1, C, F, 1) if L > 0 else z
        m = self.masks_from(y, zc)
        new_z = torch.cat([z_hist[:, 1:, :], zf], dim=1) if L > 0 else z_hist
        new_state = torch.cat([win[:, 1:, :].reshape(1, -1), new_z.reshape(1, -1), h2.reshape(1, -1), *tail], dim=1)
        return m, new_state


class StepWrapper(nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, mix, state_in):
        return self.net.step(mix, state_in)


def engine_stft(x):
    """x [..., N] float -> complex [..., 1025, T]; frame m = samples [m*hop-(n_fft-hop), m*hop+hop)."""
    win = torch.hann_window(N_FFT, periodic=True, dtype=x.dtype, device=x.device)
    xp = Fn.pad(x, (N_FFT - HOP, 0))
    shp = xp.shape
    X = torch.stft(xp.reshape(-1, shp[-1]), N_FFT, HOP, window=win, center=False, return_complex=True)
    return X.reshape(*shp[:-1], X.shape[-2], X.shape[-1])


def count_params(m):
    return sum(p.numel() for p in m.parameters())


# Band groups of the band-split network: (bins per band, bands); they tile all 1025 bins.
BAND_GROUPS = [(4, 12), (12, 12), (24, 8), (48, 8), (64, 4), (1, 1)]


def rms_norm(x, g, dim):
    return x * torch.rsqrt((x * x).mean(dim=dim, keepdim=True) + 1e-5) * g


class BandSplitNet(nn.Module):
    """Band-split variant: each of 45 frequency bands (narrow at low frequencies) is encoded by its
    own linear map to D features; a depthwise-separable conv over frames m-P .. m+L (the
    lookahead), then causal dilated conv blocks over time whose weights all bands share, with
    mixing across bands after every other block; each band decodes its own masks, plus the
    per-(source, channel, bin) affine term of Net; softmax over sources. Sharing weights across
    bands makes it learn from far fewer examples than a full-spectrum network.

    Internal layout [K*B, D, T]; the streaming state is described at `step`."""

    def __init__(self, dim=32, dilations=(1, 2, 4, 8, 16, 2), lookahead=2, past=2, channels=2,
                 bins=NB, sources=4, in_scale=1000.0, **_):
        super().__init__()
        assert sum(w * n for w, n in BAND_GROUPS) == bins
        self.D, self.L, self.P = dim, lookahead, past
        self.dilations = list(dilations)
        self.C, self.F, self.S = channels, bins, sources
        self.K = sum(n for _, n in BAND_GROUPS)
        self.in_scale = in_scale
        self.mu = nn.Parameter(torch.zeros(channels, bins))
        self.logsig = nn.Parameter(torch.zeros(channels, bins))
        self.enc_w, self.enc_b = nn.ParameterList(), nn.ParameterList()
        self.dec_w, self.dec_b = nn.ParameterList(), nn.ParameterList()
        for w, n in BAND_GROUPS:
            self.enc_w.append(nn.Parameter(torch.randn(n, channels * w, dim) / (channels * w) ** 0.5))
            self.enc_b.append(nn.Parameter(torch.zeros(n, 1, dim)))
            self.dec_w.append(nn.Parameter(torch.randn(n, dim, sources * channels * w) * 0.02))
            self.dec_b.append(nn.Parameter(torch.zeros(n, 1, sources * channels * w)))
        self.enc_g = nn.Parameter(torch.ones(dim, 1))
        k = past + lookahead + 1
        self.dw = nn.Conv1d(dim, dim, k, groups=dim)
        self.pw = nn.Conv1d(dim, dim, 1)
        nb = len(self.dilations)
        self.norm_g = nn.ParameterList([nn.Parameter(torch.ones(dim, 1)) for _ in range(nb)])
        self.conv = nn.ModuleList([nn.Conv1d(dim, dim, 3, dilation=d) for d in self.dilations])
        self.proj = nn.ModuleList([nn.Conv1d(dim, dim, 1) for _ in range(nb)])
        self.mix_g = nn.ParameterList([nn.Parameter(torch.ones(dim, 1)) for _ in range(nb // 2)])
        self.mix = nn.ModuleList([nn.Linear(self.K, self.K) for _ in range(nb // 2)])
        self.skip_w = nn.Parameter(torch.zeros(sources, channels, bins))
        self.skip_b = nn.Parameter(torch.zeros(sources, channels, bins))

    def normalise(self, mag):  # mag [N, C, F] (N frames) -> z [N, C, F]: log compression, per-bin normalisation
        z = torch.log1p(mag * self.in_scale)
        return (z - self.mu) * torch.exp(-self.logsig.clamp(-3.0, 3.0))

    def encode(self, z):  # z [N, C, F] (N frames) -> [K*N, D]
        N, C = z.shape[0], z.shape[1]
        out, f0 = [], 0
        for (w, n), W, b in zip(BAND_GROUPS, self.enc_w, self.enc_b):
            x = z[:, :, f0:f0 + w * n].reshape(N, C, n, w).permute(2, 0, 1, 3).reshape(n, N, C * w)
            out.append(torch.baddbmm(b, x, W))              # n, N, D
            f0 += w * n
        e = torch.cat(out, 0).reshape(self.K * N, self.D)
        return Fn.gelu(rms_norm(e, self.enc_g[:, 0], 1))

    def decode(self, y, zc):  # y [K*N, D], zc [N, C, F] (N frames) -> masks [N, S, C, F]
        N = zc.shape[0]
        yk = y.reshape(self.K, N, self.D)
        out, k0 = [], 0
        for (w, n), W, b in zip(BAND_GROUPS, self.dec_w, self.dec_b):
            o = torch.baddbmm(b, yk[k0:k0 + n], W)           # n, N, S*C*w
            out.append(o.reshape(n, N, self.S, self.C, w).permute(1, 2, 3, 0, 4).reshape(N, self.S, self.C, n * w))
            k0 += n
        logits = torch.cat(out, dim=3) + self.skip_w * zc[:, None] + self.skip_b
        # Softmax over the sources spelt out: onnxruntime's Softmax kernel is slow on a 4-long axis.
        ex = torch.exp(logits - logits.max(dim=1, keepdim=True).values)
        return ex / ex.sum(dim=1, keepdim=True)

    def mix_bands(self, i, y):  # y [K*B, D, T]
        K = self.K
        x = rms_norm(y, self.mix_g[i], 1)
        x = self.mix[i].weight @ x.reshape(K, -1) + self.mix[i].bias[:, None]
        return y + x.reshape(y.shape)

    def block(self, i, y, hist=None):
        """Block i on y [N, D, T]; `hist` [N, D, 2d] are the previous normalised inputs (zeros
        when None). Returns the output and the new history."""
        x = rms_norm(y, self.norm_g[i], 1)
        d2 = 2 * self.dilations[i]
        xp = Fn.pad(x, (d2, 0)) if hist is None else torch.cat([hist, x], dim=2)
        out = y + self.proj[i](Fn.gelu(self.conv[i](xp)))
        return out, xp[:, :, -d2:]

    def forward(self, mag, frames=None):
        B, C, F, T = mag.shape
        K, D = self.K, self.D
        z = self.normalise(mag.permute(0, 3, 1, 2).reshape(B * T, C, F))               # B*T, C, F
        e = self.encode(z).reshape(K * B, T, D).transpose(1, 2)                         # K*B, D, T
        ep = Fn.pad(e, (self.P + self.L, self.L))
        y = Fn.pad(e, (self.L, 0)) + Fn.gelu(self.pw(self.dw(ep)))   # K*B, D, T+L
        for i in range(len(self.dilations)):
            y, _ = self.block(i, y)
            if i % 2 == 1:
                y = self.mix_bands(i // 2, y)
        y = y[:, :, self.L:]
        z = z.reshape(B, T, C, F)
        if frames is not None:
            y, z = y[:, :, frames], z[:, frames]
        Tm = y.shape[2]
        m = self.decode(y.transpose(1, 2).reshape(K * B * Tm, D), z.reshape(B * Tm, C, F))
        return m.reshape(B, Tm, self.S, C, F).permute(0, 2, 3, 4, 1)

    def state_size(self):
        return ((self.P + self.L) * self.K * self.D + self.L * self.C * self.F
                + sum(2 * d for d in self.dilations) * self.K * self.D)

    def step(self, mag, state, tail=()):
        """One frame in, the masks of frame m-L out, with the history in `state`. Same function as
        `forward` (export.py checks it), written for a one-frame graph: histories are stored
        frame-major ([frames, K, D], so each tap and each shift is a contiguous block), every time
        convolution is a sum of taps and every 1x1 convolution a matrix product, so ONNX Runtime
        runs few, cheap nodes. mag [B, C, F, 1] may hold B views of the frame, which then share
        every matrix product (masks [B, S, C, F, 1]); state [1, B * state_size()]. State layout:
        [ encoded history (P+L) x K x B x D | normalised input L x (B*2*1025) | per block, its last
        2*dilation normalised inputs (2*dilation) x K x B x D ]. `state` may run on past that (a
        wrapper's numbers, not read here); the tensors in `tail` ([1, k] each) end the new state, in
        the same Concat, so a wrapper's state costs no extra copy of the network's."""
        K, D, L, P, C, F = self.K, self.D, self.L, self.P, self.C, self.F
        B = mag.shape[0]
        n_e = (P + L) * K * B * D
        n_z = L * B * C * F
        KBD, BCF = K * B * D, B * C * F
        e_hist = state[:, :n_e].reshape(P + L, K * B, D)
        pos = n_e + n_z
        # Each history drops its oldest frame and takes the newest: the new state is one Concat of
        # slices of `state` and the new frames, so every number of the state is copied once.
        pieces = [state[:, KBD:n_e]]
        z = self.normalise(mag[..., 0])                            # B,C,F
        e = self.encode(z)                                         # K*B,D
        win = torch.cat([e_hist, e[None]], dim=0)                 # P+L+1,K*B,D
        taps_dw = self.dw.weight[:, 0, :].t()[:, None, :]          # P+L+1,1,D
        dw = (win * taps_dw).sum(dim=0) + self.dw.bias             # K*B,D
        y = win[P] + Fn.gelu(dw @ self.pw.weight[:, :, 0].t() + self.pw.bias)
        pieces += [e.reshape(1, KBD), state[:, n_e + BCF:n_e + n_z], z.reshape(1, BCF)] if L > 0 else [e.reshape(1, KBD)]
        for i, d in enumerate(self.dilations):
            oldest = state[:, pos:pos + KBD].reshape(K * B, D)
            middle = state[:, pos + d * KBD:pos + (d + 1) * KBD].reshape(K * B, D)
            pieces.append(state[:, pos + KBD:pos + 2 * d * KBD])
            pos += 2 * d * KBD
            x = rms_norm(y, self.norm_g[i][:, 0], 1)                # K*B,D
            pieces.append(x.reshape(1, KBD))
            taps = torch.cat([oldest, middle, x], dim=1)           # K*B,3D
            w = self.conv[i].weight.permute(2, 1, 0).reshape(3 * D, D)
            h = Fn.gelu(taps @ w + self.conv[i].bias)
            y = y + h @ self.proj[i].weight[:, :, 0].t() + self.proj[i].bias
            if i % 2 == 1:
                j = i // 2
                xm = rms_norm(y, self.mix_g[j][:, 0], 1).reshape(K, B * D)
                y = y + (self.mix[j].weight @ xm + self.mix[j].bias[:, None]).reshape(K * B, D)
        zc = state[:, n_e:n_e + BCF].reshape(B, C, F) if L > 0 else z
        return self.decode(y, zc)[..., None], torch.cat(pieces + list(tail), dim=1)


class ChannelSwapAverage(nn.Module):
    """Test-time augmentation for export: the mean of a network's masks for the stereo input and,
    mapped back, for the same input with its two channels swapped (training swaps channels at random,
    so both views are in-distribution and their errors partly cancel). Same weights and lookahead as
    the network; its step runs both views as one batch of two (BandSplitNet.step), so its state is
    twice the network's."""

    def __init__(self, net):
        super().__init__()
        if not isinstance(net, BandSplitNet):
            raise ValueError("the channel-swap average needs a BandSplitNet (its step runs both views as one batch)")
        self.net = net
        self.L = net.L

    def forward(self, mag, frames=None):
        return (self.net(mag, frames) + self.net(mag.flip(1), frames).flip(2)) / 2

    def state_size(self):
        return 2 * self.net.state_size()

    def step(self, mag, state, tail=()):
        masks, new_state = self.net.step(torch.cat([mag, mag.flip(1)], dim=0), state, tail)
        return (masks[0:1] + masks[1:2].flip(2)) / 2, new_state


class InputLevelNormaliser(nn.Module):
    """Export wrapper that keeps a network's input within a level range: the magnitudes the network
    sees are scaled so that the mixture's tracked RMS level lies between `low_dbfs` and `high_dbfs`
    (left alone inside the range, brought to its nearer edge outside it; equal edges give a fixed
    target), while the masks, which are ratios, still apply to the unscaled mixture. The level is a
    gated one-pole mean of each frame's power (time constant `time_constant_s`; frames below
    `gate_dbfs` leave it unchanged), bias-corrected so that it is the mean of the frames seen so far
    until the memory fills; the gain is limited to +/- `max_gain_db`. Two numbers of state (the
    weighted power sum and its weight, both zero at the start), no lookahead, no added latency."""

    def __init__(self, net, low_dbfs, high_dbfs, time_constant_s, gate_dbfs=-80.0, max_gain_db=40.0):
        super().__init__()
        if low_dbfs > high_dbfs:
            raise ValueError("input level range %g..%g dBFS is empty" % (low_dbfs, high_dbfs))
        self.net = net
        self.L = net.L
        self.low = 10 ** (low_dbfs / 10)
        self.high = 10 ** (high_dbfs / 10)
        self.gate = 10 ** (gate_dbfs / 10)
        self.max_gain = 10 ** (max_gain_db / 20)
        self.rate = 1 - math.exp(-HOP / (SR * time_constant_s))
        win = torch.hann_window(N_FFT, periodic=True, dtype=torch.float64)
        # Parseval for the one-sided spectrum of a periodic-Hann frame: mean square of the signal.
        self.power_scale = float(2.0 / (N_FFT * (win ** 2).sum()))

    def frame_power(self, mag):
        """Mean-square signal level of each frame of mag [B, C, F, T], from its magnitudes: [B, T]."""
        return (mag ** 2).sum(2).mean(1) * self.power_scale

    def update(self, power, acc):
        """One frame of the level tracker: power [B], acc [B, 2] -> the gain [B] and the new acc.
        Before any frame above the gate the level counts as `low` (gain 1)."""
        k = self.rate * (power > self.gate).to(power.dtype)
        s = acc[:, 0] + k * (power - acc[:, 0])
        w = acc[:, 1] + k * (1 - acc[:, 1])
        eps = 1e-9
        level = (s + self.low * eps) / (w + eps)
        gain = torch.sqrt(torch.clamp(level, self.low, self.high) / level)
        return torch.clamp(gain, 1 / self.max_gain, self.max_gain), torch.stack([s, w], dim=1)

    def gains(self, mag):
        """The gain applied to each frame of mag [B, C, F, T]: [B, T] (zero-initialised tracker)."""
        power = self.frame_power(mag)
        acc = torch.zeros(mag.shape[0], 2, dtype=mag.dtype, device=mag.device)
        out = []
        for t in range(mag.shape[-1]):
            g, acc = self.update(power[:, t], acc)
            out.append(g)
        return torch.stack(out, dim=1)

    def forward(self, mag, frames=None):
        return self.net(mag * self.gains(mag)[:, None, None, :], frames)

    def state_size(self):
        return self.net.state_size() + 2

    def step(self, mag, state):
        """One frame through the network at the tracked gain. State: [ the network's | level
        tracker's 2 ]; the network reads its part of `state` in place and appends the tracker's."""
        n = self.net.state_size()
        gain, acc = self.update(self.frame_power(mag)[:, 0], state[:, n:n + 2])
        return self.net.step(mag * gain[:, None, None, None], state, [acc])


def shipped_net(net, channel_swap_tta, input_level, input_level_time_constant_s):
    """`net` wrapped as export.py ships it: through the channel-swap average when
    `channel_swap_tta`, then through the input-level normaliser for the (low, high) dBFS range
    `input_level` unless it is None. Used by export.py, evaluate.py --ckpt and train.py."""
    if channel_swap_tta:
        net = ChannelSwapAverage(net)
    if input_level is not None:
        net = InputLevelNormaliser(net, *input_level, input_level_time_constant_s)
    return net


def build_net(cfg):
    """The network a checkpoint's config describes (`arch` "bandsplit", else the full-spectrum Net)."""
    cfg = dict(cfg)
    if cfg.pop("arch", "net") == "bandsplit":
        return BandSplitNet(**cfg)
    return Net(**cfg)


def load_net(path):
    """The network of a checkpoint file, with its weights, in eval mode; and the checkpoint dict."""
    ck = torch.load(path, map_location="cpu")
    net = build_net(ck["cfg"])
    net.load_state_dict(ck["model"])
    net.eval()
    return net, ck
