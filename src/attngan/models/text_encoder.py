"""DAMSM text encoder: word embedding -> dropout -> bidirectional LSTM (SPEC §3)."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from attngan.models.layers import check_shape


class TextFeatures(NamedTuple):
    """The text encoder's outputs; T is the batch's longest caption."""

    words: Tensor  # [B, D, T] per-word features, zero at padding
    sentence: Tensor  # [B, D] the two directions' final hidden states
    mask: Tensor  # [B, T] bool, True at padding
    lengths: Tensor  # [B] int64 real words per caption


class TextEncoder(nn.Module):
    """Token ids ``[B, L]`` (0-padded) and lengths ``[B]`` -> :class:`TextFeatures`.

    Args:
        vocab_size: rows of the embedding, index 0 being ``<end>``/padding.
        word_dim: embedding width (300 in the release).
        embedding_dim: output width D; each LSTM direction has D/2 hidden units.
        dropout: dropout on the word embeddings (0.5 in the release).
    """

    def __init__(
        self, vocab_size: int, word_dim: int = 300, embedding_dim: int = 256, dropout: float = 0.5
    ) -> None:
        super().__init__()
        if embedding_dim % 2:
            raise ValueError(f"embedding_dim must be even (got {embedding_dim})")
        self.vocab_size = vocab_size
        self.embedding_dim = embedding_dim
        self.embedding = nn.Embedding(vocab_size, word_dim)
        self.dropout = nn.Dropout(dropout)
        self.lstm = nn.LSTM(word_dim, embedding_dim // 2, batch_first=True, bidirectional=True)
        with torch.no_grad():
            self.embedding.weight.uniform_(-0.1, 0.1)

    def forward(self, tokens: Tensor, lengths: Tensor) -> TextFeatures:
        check_shape("tokens", tokens, None, None)
        batch = tokens.size(0)
        check_shape("lengths", lengths, batch)
        lengths = lengths.to(torch.int64)
        lengths_cpu = lengths.cpu()
        if int(lengths_cpu.min()) < 1 or int(lengths_cpu.max()) > tokens.size(1):
            raise ValueError(
                f"caption lengths must be in 1..{tokens.size(1)} (got {lengths_cpu.tolist()})"
            )
        steps = int(lengths_cpu.max())
        embedded = self.dropout(self.embedding(tokens[:, :steps]))  # [B, T, word_dim]
        packed = pack_padded_sequence(embedded, lengths_cpu, batch_first=True, enforce_sorted=False)
        output, (hidden, _) = self.lstm(packed)
        output, _ = pad_packed_sequence(output, batch_first=True, total_length=steps)
        words = output.transpose(1, 2)  # [B, D, T]
        sentence = hidden.transpose(0, 1).reshape(batch, self.embedding_dim)  # [B, D]
        positions = torch.arange(steps, device=tokens.device)
        mask = positions[None, :] >= lengths.to(tokens.device)[:, None]  # [B, T]
        return TextFeatures(words, sentence, mask, lengths.to(tokens.device))
