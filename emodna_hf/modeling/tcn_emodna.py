"""The light backbone: MFCCs computed in torch + a TIM-Net-style bidirectional temporal convolutional network.

TIM-Net (Ye et al., ICASSP 2023, the Emo-DNA authors' previous SER model) stacks "temporal-aware blocks" of dilated
causal convolutions over 39-D MFCCs, runs them forwards and on the time-reversed sequence, and fuses the per-block
outputs with learned weights. Here every step is exact under right padding: frames are computed without centring,
convolutions are causal, and the backward pass reverses each sequence *within its own length*, so a padded utterance
gets exactly the features it gets alone.

Shipped as remote code: imports torch only.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from .frontend_emodna import FrontEnd
from .layers_emodna import Float32Buffers, weight_dtype


def mel_filterbank(n_fft: int, n_mels: int, sampling_rate: int, f_min: float, f_max: float) -> torch.Tensor:
    """HTK-style triangular mel filters, shape `(n_fft // 2 + 1, n_mels)`."""

    def hz_to_mel(f):
        return 2595.0 * np.log10(1.0 + f / 700.0)

    def mel_to_hz(m):
        return 700.0 * (10.0 ** (m / 2595.0) - 1.0)

    # Computed in numpy: under from_pretrained's meta-device context torch factories would give empty tensors.
    fft_freqs = np.linspace(0.0, sampling_rate / 2, n_fft // 2 + 1)
    hz_points = mel_to_hz(np.linspace(hz_to_mel(f_min), hz_to_mel(f_max), n_mels + 2))
    lower, center, upper = hz_points[:-2], hz_points[1:-1], hz_points[2:]
    rising = (fft_freqs[:, None] - lower) / (center - lower)
    falling = (upper - fft_freqs[:, None]) / (upper - center)
    return torch.tensor(np.clip(np.minimum(rising, falling), 0.0, None), dtype=torch.float32)


def dct_matrix(n_mels: int, n_mfcc: int) -> torch.Tensor:
    """Orthonormal DCT-II basis, shape `(n_mels, n_mfcc)` (what librosa/torchaudio use for MFCCs)."""
    n, k = np.arange(n_mels), np.arange(n_mfcc)
    basis = np.cos(math.pi / n_mels * (n[:, None] + 0.5) * k[None, :]) * math.sqrt(2.0 / n_mels)
    basis[:, 0] /= math.sqrt(2.0)
    return torch.tensor(basis, dtype=torch.float32)


def dft_basis(window: torch.Tensor, n_fft: int) -> torch.Tensor:
    """Windowed real DFT basis `(2 * (n_fft // 2 + 1), 1, n_fft)`: cosines, then negated sines, for `conv1d`.

    The window (`win_length <= n_fft` samples) is centred in the `n_fft` frame, as `torch.stft` does. Angles are
    reduced as `(k * n) mod n_fft` in integers first, so float32 cosines stay exact to rounding for every bin.
    """
    win_length = window.shape[0]
    left = (n_fft - win_length) // 2
    padded = nn.functional.pad(window.float(), (left, n_fft - win_length - left))
    n = torch.arange(n_fft, device=window.device)
    k = torch.arange(n_fft // 2 + 1, device=window.device)
    angles = (k[:, None] * n[None, :] % n_fft).float() * (2 * math.pi / n_fft)
    return torch.cat([torch.cos(angles) * padded, -torch.sin(angles) * padded]).unsqueeze(1)


class MfccFrontEnd(Float32Buffers, nn.Module):
    """Waveform `(batch, samples)` → float32 MFCC (or log-mel) frames `(batch, frames, n_mfcc)` and a frame mask.

    Frame `i` covers samples `[i * hop, i * hop + n_fft)`; only frames that lie wholly inside an utterance are valid,
    so padding never changes a valid frame. Optional cepstral mean normalisation over the valid frames.

    The power spectrum is a strided `conv1d` with a windowed DFT basis (real arithmetic: ONNX and torch.export
    have no complex STFT). Its MFCCs equal those of `torch.stft(center=False)` to float32 rounding (2e-5 on
    coefficients of magnitude 20-70, the same as either's distance to a float64 reference), so models saved with
    the former `torch.stft` front end keep their outputs. Everything here runs in float32, and the window and
    filterbanks stay float32 under a half-precision model ([`Float32Buffers`]): log-energies of a bfloat16
    spectrum would lose the quiet bands.
    """

    def __init__(self, config):
        super().__init__()
        self.n_fft = config.n_fft
        self.win_length = int(round(config.win_length_ms * config.sampling_rate / 1000))
        self.hop_length = int(round(config.hop_length_ms * config.sampling_rate / 1000))
        if self.win_length > self.n_fft:
            raise ValueError(f"win_length_ms gives {self.win_length} samples, more than n_fft={self.n_fft}.")
        self.mean_normalize = config.cepstral_mean_normalization
        f_max = config.f_max or config.sampling_rate / 2
        # Persistent buffers: from_pretrained builds modules on the meta device, so anything computed in __init__
        # must also be restorable from the checkpoint. (The DFT basis is derived from the window in forward: a
        # new buffer would be missing from checkpoints saved before it existed.)
        self.register_buffer("window", torch.hann_window(self.win_length, dtype=torch.float32))
        self.register_buffer(
            "mel_filters", mel_filterbank(self.n_fft, config.n_mels, config.sampling_rate, config.f_min, f_max)
        )
        self.register_buffer("dct", dct_matrix(config.n_mels, config.n_mfcc) if config.n_mfcc > 0 else None)
        self.output_size = config.n_mfcc if config.n_mfcc > 0 else config.n_mels

    def num_frames(self, num_samples: torch.Tensor) -> torch.Tensor:
        """Valid frames for utterances of `num_samples` samples (at least one: short clips are zero-padded)."""
        return torch.clamp((num_samples - self.n_fft) // self.hop_length + 1, min=1)

    def forward(self, input_values: torch.Tensor, attention_mask: torch.Tensor | None = None):
        batch, num_samples = input_values.shape
        if num_samples < self.n_fft:
            input_values = nn.functional.pad(input_values, (0, self.n_fft - num_samples))
        lengths = (
            attention_mask.sum(-1) if attention_mask is not None else torch.full((batch,), num_samples)
        ).to(input_values.device)
        # Float32 whatever the model's dtype (autocast would run the conv and matmuls in bfloat16).
        with torch.autocast(device_type=input_values.device.type, enabled=False):
            spectrum = nn.functional.conv1d(
                input_values.float().unsqueeze(1), dft_basis(self.window, self.n_fft), stride=self.hop_length
            )  # (batch, 2 * freq, frames): real parts, then imaginary parts
            real, imaginary = spectrum.chunk(2, dim=1)
            power = real.pow(2) + imaginary.pow(2)  # (batch, freq, frames)
            # Filterbank and DCT applied from the left, (out, in) @ (batch, in, frames): a broadcast batched
            # matmul; `frames @ filters` would fold batch and frames into one dimension, a reshape that gives
            # torch.export a guard it cannot prove for dynamic lengths.
            features = torch.log(torch.matmul(self.mel_filters.float().T, power) + 1e-6)
            if self.dct is not None:
                features = torch.matmul(self.dct.float().T, features)
            features = features.transpose(1, 2)  # (batch, frames, n_mfcc)
        frame_mask = torch.arange(features.shape[1], device=features.device)[None, :] < self.num_frames(lengths)[:, None]
        if self.mean_normalize:
            weights = frame_mask.unsqueeze(-1).to(features.dtype)
            mean = (features * weights).sum(1, keepdim=True) / weights.sum(1, keepdim=True)
            features = features - mean
        return features * frame_mask.unsqueeze(-1), frame_mask


class CausalConv1d(nn.Conv1d):
    """Conv1d whose output at time t sees inputs at t, t - d, ..., t - (k - 1) d only."""

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        left_pad = (self.kernel_size[0] - 1) * self.dilation[0]
        return super().forward(nn.functional.pad(hidden_states, (left_pad, 0)))


class TemporalAwareBlock(nn.Module):
    """TIM-Net block: two dilated causal convs (each LayerNorm → ReLU → dropout), then a sigmoid gate on the input.

    LayerNorm over channels (per frame) replaces TIM-Net's BatchNorm so that padding in a batch cannot leak in.
    """

    def __init__(self, channels: int, kernel_size: int, dilation: int, dropout: float):
        super().__init__()
        self.conv1 = CausalConv1d(channels, channels, kernel_size, dilation=dilation)
        self.conv2 = CausalConv1d(channels, channels, kernel_size, dilation=dilation)
        self.norm1 = nn.LayerNorm(channels)
        self.norm2 = nn.LayerNorm(channels)
        self.dropout = nn.Dropout(dropout)

    def _conv(self, conv: CausalConv1d, norm: nn.LayerNorm, hidden_states: torch.Tensor) -> torch.Tensor:
        hidden_states = norm(conv(hidden_states).transpose(1, 2)).transpose(1, 2)
        return self.dropout(torch.relu(hidden_states))

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """`hidden_states`: `(batch, channels, frames)` → same shape."""
        gate = self._conv(self.conv2, self.norm2, self._conv(self.conv1, self.norm1, hidden_states))
        return hidden_states * torch.sigmoid(gate)


def reverse_within_length(hidden_states: torch.Tensor, frame_mask: torch.Tensor) -> torch.Tensor:
    """Reverse each sequence of `(batch, channels, frames)` over its valid frames, leaving padding at the end."""
    frames = hidden_states.shape[-1]
    lengths = frame_mask.sum(-1, keepdim=True)
    positions = torch.arange(frames, device=hidden_states.device)[None, :]
    index = torch.where(positions < lengths, lengths - 1 - positions, positions)
    return hidden_states.gather(-1, index[:, None, :].expand_as(hidden_states))


class TemporalConvBackbone(nn.Module):
    """MFCC front end + bidirectional stack of temporal-aware blocks.

    Returns the per-block outputs (forward + re-aligned backward) stacked as `(batch, num_blocks, frames, hidden)`,
    the multi-scale "layers" that the model fuses with learned weights, and the frame mask `(batch, frames)`.
    """

    def __init__(self, config):
        super().__init__()
        self.front_end = MfccFrontEnd(config)
        channels = config.tcn_hidden_size
        self.input_projection = nn.Conv1d(self.front_end.output_size, channels, kernel_size=1)
        dilations = [2**j for j in range(config.tcn_num_blocks)]
        self.forward_blocks = nn.ModuleList(
            TemporalAwareBlock(channels, config.tcn_kernel_size, d, config.tcn_dropout) for d in dilations
        )
        self.backward_blocks = nn.ModuleList(
            TemporalAwareBlock(channels, config.tcn_kernel_size, d, config.tcn_dropout) for d in dilations
        )
        self.num_layers = config.tcn_num_blocks
        self.hidden_size = channels

    def encode_features(self, features: torch.Tensor, frame_mask: torch.Tensor) -> torch.Tensor:
        """Front-end frames `(batch, frames, n_features)` → block outputs `(batch, num_blocks, frames, hidden)`."""
        hidden = self.input_projection(features.transpose(1, 2).to(weight_dtype(self.input_projection)))
        forward_states = hidden
        backward_states = reverse_within_length(hidden, frame_mask)
        layers = []
        for forward_block, backward_block in zip(self.forward_blocks, self.backward_blocks, strict=True):
            forward_states = forward_block(forward_states)
            backward_states = backward_block(backward_states)
            layers.append(forward_states + reverse_within_length(backward_states, frame_mask))
        return torch.stack(layers, dim=1).transpose(2, 3)


def _describe(config, base: str | None) -> str:
    return (f"light MFCC + bidirectional temporal convolutional network ('tcn', {config.tcn_num_blocks} blocks × "
            f"{config.tcn_hidden_size} channels), trained from scratch.")


TCN = FrontEnd(
    name="tcn",
    build=TemporalConvBackbone,
    describe=_describe,
    cache_fields=("backbone_type", "sampling_rate", "n_fft", "win_length_ms", "hop_length_ms", "n_mels", "n_mfcc",
                  "f_min", "f_max", "cepstral_mean_normalization"),
    small=True,
)
