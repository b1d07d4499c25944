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
        return torch.softmax(logits, dim=1)

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

    def step(self, mag, state):
        """mag [1, C, F, 1], state [1, S] -> masks [1, S, C, F, 1] of frame m-L, new state."""
        H, L, P, C, F = self.H, self.L, self.P, self.C, self.F
        n_e = (P + L) * H
        n_z = L * C * F
        e_hist = state[:, :n_e].reshape(1, P + L, H)
        z_hist = state[:, n_e:n_e + n_z].reshape(1, L, C * F)
        h = state[:, n_e + n_z:].reshape(self.layers, 1, H)
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
        new_state = torch.cat([win[:, 1:, :].reshape(1, -1), new_z.reshape(1, -1), h2.reshape(1, -1)], dim=1)
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
