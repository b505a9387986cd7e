"""PyTorch reference of the default dual encoder (stages/learn defaults) for the train_step bench.

Same shapes as the Rust bench: CNN (2x2 average pooling of the log-mel, 3x3 stride-2 convs 16/32/64, ReLU, mean+max pooling,
LayerNorm), text transformer (width 128, 1 pre-LN layer, 4 heads, FF 256, GELU, dropout 0.1,
mean pooling), projections to 128, L2 norm, L_sup with tau = 0.05, AdamW. Random data.
Prints `steps_per_second <value>` (with `--profile`, torch.profiler's table of ops by self CPU
time instead).
"""

import argparse
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class Cnn(nn.Module):
    def __init__(self, channels=(16, 32, 64), pool=2):
        super().__init__()
        self.pool = pool
        convs, c_in = [], 1
        for c in channels:
            convs.append(nn.Conv2d(c_in, c, 3, stride=2, padding=1))
            c_in = c
        self.convs = nn.ModuleList(convs)
        self.norm = nn.LayerNorm(2 * c_in)

    def forward(self, x):  # [n, mels, frames]
        x = x.unsqueeze(1)
        if self.pool > 1:
            x = F.avg_pool2d(x, self.pool)
        for conv in self.convs:
            x = F.relu(conv(x))
        x = x.flatten(2)
        return self.norm(torch.cat([x.mean(2), x.amax(2)], 1))


class Layer(nn.Module):
    def __init__(self, d, heads, ff, p):
        super().__init__()
        self.heads, self.p = heads, p
        self.q, self.k, self.v, self.o = (nn.Linear(d, d) for _ in range(4))
        self.n1, self.n2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.f1, self.f2 = nn.Linear(d, ff), nn.Linear(ff, d)

    def attn(self, x, pad):
        b, t, d = x.shape
        h = self.heads
        split = lambda y: y.view(b, t, h, d // h).transpose(1, 2)
        q, k, v = split(self.q(x)), split(self.k(x)), split(self.v(x))
        s = q @ k.transpose(2, 3) / (d // h) ** 0.5
        s = s.masked_fill(pad[:, None, None, :], -1e4)
        w = F.dropout(s.softmax(-1), self.p, self.training)
        return self.o((w @ v).transpose(1, 2).reshape(b, t, d))

    def forward(self, x, pad):
        x = x + F.dropout(self.attn(self.n1(x), pad), self.p, self.training)
        return x + F.dropout(self.f2(F.gelu(self.f1(self.n2(x)))), self.p, self.training)


class Text(nn.Module):
    def __init__(self, vocab, tokens, d=128, layers=1, heads=4, ff=256, p=0.1):
        super().__init__()
        self.word, self.pos = nn.Embedding(vocab, d), nn.Embedding(tokens, d)
        self.n0, self.norm = nn.LayerNorm(d), nn.LayerNorm(d)
        self.layers = nn.ModuleList(Layer(d, heads, ff, p) for _ in range(layers))
        self.p = p

    def forward(self, tok):
        b, t = tok.shape
        pad = tok == 0
        h = F.dropout(self.n0(self.word(tok) + self.pos(torch.arange(t)[None])), self.p, self.training)
        for layer in self.layers:
            h = layer(h, pad)
        h = self.norm(h)
        valid = (~pad).float()[..., None]
        return (h * valid).sum(1) / valid.sum(1).clamp_min(1)


class Dual(nn.Module):
    def __init__(self, vocab, tokens, dim=128):
        super().__init__()
        self.audio, self.text = Cnn(), Text(vocab, tokens)
        self.pa, self.pt = nn.Linear(128, dim), nn.Linear(128, dim)

    def forward(self, mel, mask, tok):
        b, w, m, t = mel.shape
        e = self.audio(mel.view(b * w, m, t)).view(b, w, -1)
        a = (e * mask[..., None]).sum(1) / mask.sum(1, keepdim=True).clamp_min(1)
        return F.normalize(self.pa(a), dim=1), F.normalize(self.pt(self.text(tok)), dim=1)


def l_sup(sim, pos, tau=0.05):
    logits = sim / tau
    lca, lac = logits.log_softmax(1), logits.log_softmax(0)
    n = pos.sum()
    return -0.5 * ((lac * pos).sum() / n + (lca * pos).sum() / n)


def main():
    ap = argparse.ArgumentParser()
    for k, v in [("threads", 2), ("steps", 60), ("batch", 32), ("mels", 64), ("frames", 200), ("tokens", 16), ("vocab", 42)]:
        ap.add_argument(f"--{k}", type=int, default=v)
    ap.add_argument("--profile", action="store_true", help="print torch.profiler's op table instead")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    model = Dual(a.vocab, a.tokens)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
    b = a.batch
    mel = torch.randn(b, 1, a.mels, a.frames)
    mask = torch.ones(b, 1)
    tok = torch.randint(2, a.vocab, (b, a.tokens))
    clips = torch.arange(b) // 2
    pos = (clips[:, None] == clips[None, :]).float()

    def step():
        a_emb, t_emb = model(mel, mask, tok)
        loss = l_sup(a_emb @ t_emb.T, pos)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss.item()

    for _ in range(5):
        step()
    if a.profile:
        # Where a step's time goes, op by op (self CPU time), for the breakdown.
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(a.steps):
                step()
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=30))
        return
    t = time.perf_counter()
    for _ in range(a.steps):
        step()
    print(f"steps_per_second {a.steps / (time.perf_counter() - t):.4f}")


if __name__ == "__main__":
    main()
