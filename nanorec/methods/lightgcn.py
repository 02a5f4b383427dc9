"""LightGCN (He et al. 2020) on the user-item graph of the training sequences, via PyG."""
from __future__ import annotations

import copy
import time
import warnings

import numpy as np
import torch

from ..data import EvalSet, Sequences
from ..evaluation.metrics import evaluate


def normalized_adjacency(users: np.ndarray, items: np.ndarray, num_nodes: int) -> torch.Tensor:
    """Symmetric D^-1/2 A D^-1/2 of the bipartite graph (edges both ways) as a sparse CSR tensor."""
    src = np.concatenate([users, items])
    dst = np.concatenate([items, users])
    deg = np.bincount(src, minlength=num_nodes).astype(np.float32)
    w = 1.0 / np.sqrt(deg[src] * deg[dst])
    adj = torch.sparse_coo_tensor(torch.from_numpy(np.stack([dst, src])), torch.from_numpy(w),
                                  (num_nodes, num_nodes), check_invariants=False).coalesce()
    with warnings.catch_warnings():  # "sparse CSR support is in beta": we only multiply with it
        warnings.simplefilter("ignore", UserWarning)
        return adj.to_sparse_csr()  # (V, V) symmetric


class _SelfAdjoint(torch.autograd.Function):
    """y = fn(x) for a linear, self-adjoint fn (sum_l alpha_l A^l x, A symmetric): dL/dx = fn(dL/dy);
    torch's own backward of a CSR product transposes the matrix at every call (~4x slower on CPU)."""

    @staticmethod
    def forward(ctx, x, fn):
        ctx.fn = fn
        return fn(x)

    @staticmethod
    def backward(ctx, grad):
        return ctx.fn(grad), None


class LightGCN:
    """LightGCN: user and item embeddings smoothed over the user-item graph, scored by dot product.

    Nodes: users 0..U-1 (rows of `train`) and items U..U+N-1, an edge per distinct (user, item) pair.
    BPR loss on uniform negatives, L2 on the batch's layer-0 embeddings, Adam; the best weights by
    validation NDCG@10 (every `eval_every` epochs) are kept, and training stops after `patience`
    evaluations without gain, `max_epochs` or `max_seconds` (`history` records what was trained).
    score uses only `users` (the history is in the graph); a user outside the graph scores all 0."""

    def __init__(self, dim: int = 64, layers: int = 3, batch_size: int = 4096, lr: float = 5e-3,
                 weight_decay: float = 1e-4, max_epochs: int = 60, eval_every: int = 5,
                 patience: int = 3, max_seconds: float = 540.0, seed: int = 0, progress: bool = True):
        self.dim, self.layers, self.batch_size, self.lr = dim, layers, batch_size, lr
        self.weight_decay, self.max_epochs, self.eval_every = weight_decay, max_epochs, eval_every
        self.patience, self.max_seconds, self.seed, self.progress = patience, max_seconds, seed, progress
        self.history: list[dict] = []  # one entry per validation: epoch, seconds, NDCG@10, loss

    def fit(self, train: Sequences, num_items: int, valid: EvalSet | None = None) -> "LightGCN":
        from torch_geometric.nn.models import LightGCN as PygLightGCN
        from tqdm.auto import tqdm


        torch.manual_seed(self.seed)
        gen = torch.Generator().manual_seed(self.seed)
        U, N = len(train), num_items
        self.num_users, self.num_items = U, N
        # distinct (user, item) pairs -> edges; item i is node U + i - 1
        pairs = np.unique(np.stack([np.repeat(np.arange(U), train.lengths), train.items], 1), axis=0)  # (E, 2)
        users = torch.from_numpy(pairs[:, 0])                # (E,)
        items = torch.from_numpy(pairs[:, 1] + U - 1)        # (E,) node ids
        self.adj = normalized_adjacency(pairs[:, 0], pairs[:, 1] + U - 1, U + N)
        self.model = PygLightGCN(U + N, self.dim, self.layers, normalize=False)  # adj is pre-normalized
        opt = torch.optim.Adam(self.model.parameters(), lr=self.lr)

        E = len(users)
        self.history, self.best_epoch = [], None
        best, best_state, bad, start = -1.0, None, 0, time.time()
        bar = tqdm(range(1, self.max_epochs + 1), desc="LightGCN", unit="epoch", disable=None if self.progress else True)
        for epoch in bar:
            self.model.train()
            perm = torch.randperm(E, generator=gen)
            total = 0.0
            for s in range(0, E, self.batch_size):
                idx = perm[s:s + self.batch_size]
                u, i = users[idx], items[idx]                                      # (b,), (b,)
                j = torch.randint(0, N, (len(idx),), generator=gen) + U            # (b,) uniform negatives
                emb = self.embed()                                                 # (V, d) all nodes, L layers
                pos = (emb[u] * emb[i]).sum(-1)                                    # (b,)
                neg = (emb[u] * emb[j]).sum(-1)                                    # (b,)
                loss = self.model.recommendation_loss(pos, neg, node_id=torch.cat([u, i, j]),
                                                      lambda_reg=self.weight_decay)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += loss.item() * len(idx)
            out_of_time = time.time() - start > self.max_seconds
            last = epoch == self.max_epochs or out_of_time
            if valid is not None and (epoch % self.eval_every == 0 or last):
                self._cache()
                ndcg = evaluate(self.score, valid)["NDCG@10"]
                self.history.append(dict(epoch=epoch, seconds=round(time.time() - start, 1),
                                         valid_ndcg10=ndcg, loss=total / E))
                if ndcg > best:
                    best, bad = ndcg, 0
                    best_state = copy.deepcopy(self.model.state_dict())
                    self.best_epoch = epoch
                else:
                    bad += 1
                if bad >= self.patience:
                    break
            bar.set_postfix(loss=f"{total / E:.4f}", **({"best_ndcg10": f"{best:.4f}"} if best >= 0 else {}))
            if out_of_time:
                break
        bar.close()
        if best_state is not None:
            self.model.load_state_dict(best_state)
        self._cache()
        return self

    def _propagate(self, x: torch.Tensor) -> torch.Tensor:
        """PyG LightGCN.get_embedding applied to any x (V, d): sum_l alpha_l A^l x, by its LGConv layers."""
        m = self.model
        out = x * m.alpha[0]
        for k, conv in enumerate(m.convs):
            x = conv(x, self.adj)                                    # (V, d) one more hop
            out = out + x * m.alpha[k + 1]
        return out

    def embed(self) -> torch.Tensor:
        """(V, d) final embeddings = model.get_embedding(adj), with the cheap self-adjoint backward."""
        return _SelfAdjoint.apply(self.model.embedding.weight, self._propagate)

    @torch.no_grad()
    def _cache(self):
        """Final (layer-averaged) embeddings, computed once for scoring."""
        self.model.eval()
        emb = self.model.get_embedding(self.adj)                     # (U+N, d)
        self.user_emb = emb[:self.num_users]                         # (U, d)
        self.item_emb = torch.cat([torch.zeros(1, self.dim), emb[self.num_users:]])  # (N+1, d), row 0 = padding

    def state(self) -> dict:
        return {"user_emb": self.user_emb.numpy(), "item_emb": self.item_emb.numpy()}

    @classmethod
    def from_state(cls, state: dict) -> "LightGCN":
        m = cls(dim=state["item_emb"].shape[1])
        m.user_emb, m.item_emb = torch.from_numpy(state["user_emb"]), torch.from_numpy(state["item_emb"])
        m.num_users, m.num_items = len(m.user_emb), len(m.item_emb) - 1
        return m

    @torch.no_grad()
    def score(self, histories: Sequences, users: np.ndarray) -> torch.Tensor:
        users = torch.as_tensor(np.asarray(users), dtype=torch.long)       # (B,)
        known = users < self.num_users
        u = torch.zeros(len(users), self.dim)
        u[known] = self.user_emb[users[known]]                               # (B, d); unknown users stay 0
        return u @ self.item_emb.T                                           # (B, N+1)
