"""The GPT recommender: nanoGPT's decoder over item tokens.

    E = wte + sum_i proj_i(content_i)   (N+1, C) item vectors; content tables frozen
    x = E[item] + wpe(position)
    x = Block(x) * n_layer               (causal self-attention restricted to the same user)
    logits = ln_f(x) @ E.T               (item vectors tied to the output layer)

Item index 0 is padding: its wte row stays zero (with content tables its row of E is not, which
does not matter: no real token attends to it, it has no target, and its logit is -inf).
Attention has two backends that must agree (a test checks it): SDPA with `packing.attention_mask`
(the reference) and compiled FlexAttention with `packing.flex_block_mask` (the fast path on GPU).
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..config import Config
from .loss import full_softmax_cross_entropy
from .packing import IGNORE, attention_mask, flex_block_mask

_flex_attention = None


def _compiled_flex():
    # FlexAttention is only fast (and on CPU only runs) when compiled; compile once per process.
    global _flex_attention
    if _flex_attention is None:
        from torch.nn.attention.flex_attention import flex_attention
        _flex_attention = torch.compile(flex_attention, dynamic=False)
    return _flex_attention


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: Config):
        super().__init__()
        assert cfg.n_embd % cfg.n_head == 0, "n_embd must be divisible by n_head"
        self.c_attn = nn.Linear(cfg.n_embd, 3 * cfg.n_embd, bias=cfg.bias)
        self.c_proj = nn.Linear(cfg.n_embd, cfg.n_embd, bias=cfg.bias)
        self.resid_dropout = nn.Dropout(cfg.dropout)
        self.n_head = cfg.n_head
        self.backend = cfg.attention

    def forward(self, x, mask):
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        # No dropout on attention probabilities: FlexAttention has none, and the
        # two backends must compute the same function. Dropout acts on the residual stream.
        if self.backend == "flex":
            y = _compiled_flex()(q, k, v, block_mask=mask)
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):
    def __init__(self, cfg: Config):
        super().__init__()
        self.c_fc = nn.Linear(cfg.n_embd, 4 * cfg.n_embd, bias=cfg.bias)
        self.c_proj = nn.Linear(4 * cfg.n_embd, cfg.n_embd, bias=cfg.bias)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x):
        return self.dropout(self.c_proj(F.gelu(self.c_fc(x))))


class Block(nn.Module):
    def __init__(self, cfg: Config):
        super().__init__()
        self.ln_1 = nn.LayerNorm(cfg.n_embd, bias=cfg.bias)
        self.attn = CausalSelfAttention(cfg)
        self.ln_2 = nn.LayerNorm(cfg.n_embd, bias=cfg.bias)
        self.mlp = MLP(cfg)

    def forward(self, x, mask):
        x = x + self.attn(self.ln_1(x), mask)
        x = x + self.mlp(self.ln_2(x))
        return x


class ContentInput(nn.Module):
    """proj(content[item]) of one frozen table (a buffer, not saved), for all items; no content: `missing`."""

    def __init__(self, table: torch.Tensor, has_content: torch.Tensor, n_embd: int):
        super().__init__()
        self.register_buffer("table", table.float(), persistent=False)          # (N+1, D)
        self.register_buffer("has_content", has_content.bool(), persistent=False)  # (N+1,)
        self.proj = nn.Linear(table.shape[1], n_embd, bias=False)
        self.missing = nn.Parameter(torch.zeros(n_embd))

    def forward(self):  # -> (N+1, C): every item's content vector in model space
        return torch.where(self.has_content[:, None], self.proj(self.table), self.missing)


class GPT(nn.Module):

    def __init__(self, cfg: Config, num_items: int, content=()):
        """num_items N: item indices 1..N, 0 = padding. content: [(table (N+1, D), has_content (N+1,)), ...]."""
        super().__init__()
        # cfg is resolved (config.resolve): dropout is the rate its layers use, never -1 (auto)
        self.cfg = cfg
        self.num_items = num_items
        self.wte = nn.Embedding(num_items + 1, cfg.n_embd, padding_idx=0)
        self.wpe = nn.Embedding(cfg.block_size, cfg.n_embd)
        self.content = nn.ModuleList([ContentInput(t, h, cfg.n_embd) for t, h in content])
        self.drop = nn.Dropout(cfg.dropout)
        self.h = nn.ModuleList([Block(cfg) for _ in range(cfg.n_layer)])
        self.ln_f = nn.LayerNorm(cfg.n_embd, bias=cfg.bias)
        self._train_hidden = None  # compile_for_training() sets a compiled `hidden` for training steps
        self.apply(self._init_weights)
        for name, p in self.named_parameters():  # GPT-2: scale residual projections by depth
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * cfg.n_layer))
        with torch.no_grad():
            self.wte.weight[0].zero_()

    def _init_weights(self, module):
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def make_mask(self, seq_ids):
        """The attention mask for the configured backend, from (B, T) seq ids."""
        return flex_block_mask(seq_ids) if self.cfg.attention == "flex" else attention_mask(seq_ids)

    def item_embeddings(self):
        """(N+1, C) each item's vector at the input AND the output: wte + sum_i proj_i(content_i),
        so a cold item is still scored through what its content shares with bought ones."""
        w = self.wte.weight
        for c in self.content:
            w = w + c()
        return w

    def hidden(self, tokens, pos_ids, seq_ids, items=None):
        """(B, T) tokens, positions, seq ids -> (B, T, C) final hidden states (items: item_embeddings())."""
        mask = self.make_mask(seq_ids)
        items = self.item_embeddings() if items is None else items
        x = F.embedding(tokens, items) + self.wpe(pos_ids)  # (B, T, C)
        x = self.drop(x)
        for block in self.h:
            x = block(x, mask)
        return self.ln_f(x)

    def logits(self, h, items=None):
        """(..., C) hidden -> (..., N+1) scores over all items; padding is -inf."""
        items = self.item_embeddings() if items is None else items
        logits = h @ items.T
        logits[..., 0] = float("-inf")
        return logits

    def forward(self, tokens, pos_ids, seq_ids, targets=None, loss_fn=None):
        """Training: mean cross-entropy over the slots whose target is not -100, logits only there
        (the output layer dominates the cost). targets (B, T), or (B, T, H) with soft labels.
        loss_fn(h (M, C), items, targets) -> scalar, default the exact full softmax
        (`loss.OutputLoss.for_step`). Without targets, the (B, T, C) hidden states."""
        items = self.item_embeddings()  # (N+1, C), computed once for input and output
        h = (self._train_hidden or self.hidden)(tokens, pos_ids, seq_ids, items)
        if targets is None:
            return h
        keep = (targets if targets.dim() == 2 else targets[..., 0]) != IGNORE  # (B, T)
        return (loss_fn or full_softmax_cross_entropy)(h[keep], items, targets[keep])  # h[keep]: (M, C)

    def compile_for_training(self) -> None:
        """torch.compile `hidden` for training steps. The loss stays eager: its target count changes every
        batch, and compiled it recompiled until torch gave up (gpu_beauty.json); scoring: its shapes vary."""
        self._train_hidden = torch.compile(self.hidden)

    def configure_optimizer(self, weight_decay, learning_rate, betas, device_type):
        """AdamW: matrices of Linear layers decay; biases, LayerNorm weights and embeddings do not
        (decayed item embeddings would pull rare items towards never being recommended)."""
        decay, no_decay = [], []
        for mn, m in self.named_modules():
            for pn, p in m.named_parameters(recurse=False):
                (decay if isinstance(m, nn.Linear) and pn == "weight" else no_decay).append(p)
        groups = [{"params": decay, "weight_decay": weight_decay},
                  {"params": no_decay, "weight_decay": 0.0}]
        fused = device_type == "cuda"
        return torch.optim.AdamW(groups, lr=learning_rate, betas=betas, fused=fused)

    @torch.no_grad()
    def query(self, tokens, pos_ids, seq_ids, last):
        """(h_last (B, C), items (N+1, C)): `score`'s factors (h_last @ items.T), to score in chunks."""
        items = self.item_embeddings()
        h = self.hidden(tokens, pos_ids, seq_ids, items)  # (B, T, C)
        return h[torch.arange(h.shape[0], device=h.device), last], items  # (B, C)

    @torch.no_grad()
    def score(self, tokens, pos_ids, seq_ids, last):
        """(B, T) tokens, pos_ids, seq_ids, last (B,) column -> (B, N+1) scores of the next item."""
        h_last, items = self.query(tokens, pos_ids, seq_ids, last)
        return self.logits(h_last, items).float()
