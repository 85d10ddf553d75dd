"""A small decoder-only Transformer on the same characters: nanoGPT's shape, in the recurrent models' protocol.

Pre-LayerNorm blocks (x + attn(ln(x)), x + mlp(ln(x))), causal self-attention through
`F.scaled_dot_product_attention(is_causal=True)` (the fused kernels on a GPU), learned token and position
embeddings, a 4x GELU MLP, dropout on the embeddings, the attention weights and each residual branch, a final
LayerNorm, and the output tied to the token embedding.

The protocol the loop, the step (CUDA graph), DDP, scoring and generation use: `init_state(batch, device)` and
`forward(x, state) -> (logits, state)`. A Transformer carries nothing between windows, so its state is an
empty (batch, 0) tensor that `forward` hands back unchanged: detaching, copying and counting its rows work as
for an RNN's (batch, hidden) state, and cost nothing.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from tasks.train.params import ModelParams

# nanoGPT's (GPT-2's) initialisation: every weight N(0, 0.02²), each residual projection's std divided by
# sqrt(2 * layers) (two residual branches a block), so the residual stream's variance does not grow with depth.
INIT_STD = 0.02


def transformer_parameters(vocab_size: int, hidden: int, layers: int, context: int) -> int:
    """V*H + T*H + L*(12*H² + 13*H) + 2*H + V: token and position embeddings; per block two LayerNorms (4H),
    the q, k, v projection (3H² + 3H), the attention's output (H² + H), the MLP's two layers (8H² + 5H); the
    final LayerNorm (2H) and the output bias (V). The output weight is the token embedding: not counted twice."""
    return vocab_size * hidden + context * hidden + layers * (12 * hidden**2 + 13 * hidden) + 2 * hidden + vocab_size


class CausalSelfAttention(nn.Module):
    def __init__(self, hidden: int, heads: int, dropout: float):
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.proj = nn.Linear(hidden, hidden)
        self.residual_dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, steps, hidden = x.shape
        q, k, v = self.qkv(x).split(hidden, dim=2)  # (batch, steps, hidden) each
        q, k, v = (t.view(batch, steps, self.heads, hidden // self.heads).transpose(1, 2) for t in (q, k, v))
        # (batch, heads, steps, head_size); is_causal: position t attends to positions <= t only.
        y = F.scaled_dot_product_attention(
            q, k, v, dropout_p=self.dropout if self.training else 0.0, is_causal=True
        )  # (batch, heads, steps, head_size)
        y = y.transpose(1, 2).reshape(batch, steps, hidden)  # (batch, steps, hidden)
        return self.residual_dropout(self.proj(y))


class Block(nn.Module):
    def __init__(self, hidden: int, heads: int, dropout: float):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(hidden), nn.LayerNorm(hidden)
        self.attention = CausalSelfAttention(hidden, heads, dropout)
        self.fc, self.proj = nn.Linear(hidden, 4 * hidden), nn.Linear(4 * hidden, hidden)
        self.residual_dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attention(self.ln1(x))  # (batch, steps, hidden)
        return x + self.residual_dropout(self.proj(F.gelu(self.fc(self.ln2(x)))))  # (batch, steps, hidden)


class Transformer(nn.Module):
    """Logits for every position of a window of at most `context` characters, each from those up to it."""

    def __init__(self, vocab_size: int, params: ModelParams, context: int):
        super().__init__()
        self.context = context
        self.token = nn.Embedding(vocab_size, params.hidden)
        self.position = nn.Embedding(context, params.hidden)
        self.dropout = nn.Dropout(params.dropout)
        self.blocks = nn.ModuleList(Block(params.hidden, params.heads, params.dropout) for _ in range(params.layers))
        self.norm = nn.LayerNorm(params.hidden)
        # The output weight is the token embedding (tied); a bias of its own, zero at first, lets the
        # characters' frequencies be learned apart from the embedding's geometry, for V parameters.
        self.bias = nn.Parameter(torch.zeros(vocab_size))
        for name, weight in self.named_parameters():
            if name.endswith("proj.weight"):  # the residual branches' last projections
                nn.init.normal_(weight, std=INIT_STD / math.sqrt(2 * params.layers))
            elif name.endswith("weight") and weight.dim() == 2:  # the linear layers and the embeddings
                nn.init.normal_(weight, std=INIT_STD)
            elif name.endswith("bias"):  # zero, as a LayerNorm's bias is already
                nn.init.zeros_(weight)

    def init_state(self, batch: int, device: torch.device) -> torch.Tensor:
        return torch.zeros(batch, 0, device=device)  # (batch, 0): nothing is carried

    def forward(self, x: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        steps = x.shape[1]
        if steps > self.context:
            raise ValueError(f"a window of {steps} characters is longer than this Transformer's context {self.context}")
        positions = torch.arange(steps, device=x.device)  # (steps,)
        h = self.dropout(self.token(x) + self.position(positions))  # (batch, steps, hidden)
        for block in self.blocks:
            h = block(h)  # (batch, steps, hidden)
        h = self.norm(h)
        # Imported here: tasks.train.model imports this module to build it.
        from tasks.train.model import output_logits

        return output_logits(h, self.token.weight, self.bias), state  # (batch, steps, vocab), (batch, 0)
