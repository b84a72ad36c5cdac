"""jrnn: recurrent neural networks in JAX.

The seed's Elman RNN ``s_t = f(U x_t + W s_{t-1})``, ``o_t = g(V s_t)``, the LSTM and the GRU as pure cells;
``jrnn.scan`` for the recurrence over time (length-aware, either direction); bidirectional and deep networks as
compositions of that scan; exact BPTT from ``jax.grad``; PyTorch, Keras, Flax and Equinox weights in and out;
language models that generate text in one compiled program.
"""

__version__ = "0.1.0"

from jrnn import init, sharding
from jrnn._src.bidirectional import Bidirectional, BidirectionalParams, BidirectionalState, bidirectional
from jrnn._src.cells.conv_lstm import ConvLSTMCell, ConvLSTMParams, conv_lstm
from jrnn._src.cells.elman import ElmanCell, ElmanParams, elman
from jrnn._src.cells.exprnn import ExpRNNCell, ExpRNNParams, ExpRNNPrepared, exprnn, exprnn_optimizer, modrelu
from jrnn._src.cells.gated_delta_net import GatedDeltaNetCell, GatedDeltaNetParams, gated_delta_net
from jrnn._src.cells.gru import GRUCell, GRUParams, gru
from jrnn._src.cells.hawk import HawkBlockCell, HawkBlockParams, hawk_block
from jrnn._src.cells.indrnn import IndRNNCell, IndRNNParams, indrnn, indrnn_constraint
from jrnn._src.cells.layer_norm import (
    LayerNormGRUCell,
    LayerNormGRUParams,
    LayerNormLSTMCell,
    LayerNormLSTMParams,
    layer_norm_gru,
    layer_norm_lstm,
)
from jrnn._src.cells.lru import LRUCell, LRUParams, lru
from jrnn._src.cells.lstm import LSTMCell, LSTMParams, LSTMState, lstm
from jrnn._src.cells.mamba import MambaCell, MambaParams, S6Cell, S6Params, mamba, s6
from jrnn._src.cells.mamba2 import Mamba2Cell, Mamba2Params, mamba2
from jrnn._src.cells.mgu import MGUCell, MGUParams, mgu
from jrnn._src.cells.min_rnn import MinGRUCell, MinGRUParams, MinLSTMCell, MinLSTMParams, min_gru, min_lstm
from jrnn._src.cells.mlstm import MLSTMCell, MLSTMParams, MLSTMState, mlstm
from jrnn._src.cells.mlstm_block import MLSTMBlockCell, MLSTMBlockParams, mlstm_block
from jrnn._src.cells.rg_lru import RGLRUCell, RGLRUParams, rg_lru
from jrnn._src.cells.s5 import S5Cell, S5Params, s5
from jrnn._src.cells.slstm import SLSTMCell, SLSTMParams, SLSTMState, slstm
from jrnn._src.checkpoint import CheckpointError, TrainState, checkpoint_steps, restore_checkpoint, save_checkpoint
from jrnn._src.contract import (
    Cell,
    Chunkwise,
    InputShaped,
    LinearRecurrence,
    Preparable,
    RecurrentMatrix,
    SequenceLayer,
    StateMaskable,
    Windowed,
    WindowInputs,
    WindowState,
    Wrapper,
)
from jrnn._src.deep import Deep, deep
from jrnn._src.diagnostics import StateJacobians, elman_bound, gradient_report, state_jacobians, step_grad_norms
from jrnn._src.generate import generate, sample_logits
from jrnn._src.interop.equinox import EquinoxCell, from_equinox, to_equinox
from jrnn._src.interop.flax import FlaxRNN, from_flax, to_flax
from jrnn._src.interop.keras import KerasRNN, from_keras, to_keras
from jrnn._src.interop.torch import TorchRNN, from_torch, to_torch
from jrnn._src.lm import LanguageModel, LanguageModelParams, language_model
from jrnn._src.losses import last_valid, masked_cross_entropy, masked_mse
from jrnn._src.merge import FunctionMerge, SeedMerge, SeedMergeParams, seed_merge
from jrnn._src.plotting import plot_gradient_flow
from jrnn._src.readout import Readout, ReadoutParams, readout
from jrnn._src.regularisation import RecurrentDropout, recurrent_dropout
from jrnn._src.remat import checkpointed_scan
from jrnn._src.residual import PreNorm, PreNormParams, pre_norm
from jrnn._src.scan import RNN, newton_scan, scan
from jrnn._src.sequences import reverse_sequences, valid_mask
from jrnn._src.solvers.associative import associative
from jrnn._src.solvers.auto import auto
from jrnn._src.solvers.base import Solver
from jrnn._src.solvers.chunked import chunked
from jrnn._src.solvers.fused import fused, register_fused_kernel
from jrnn._src.solvers.kernels import Kernel as FusedKernel
from jrnn._src.solvers.newton import NewtonInfo, deer, elk, quasi_deer
from jrnn._src.solvers.sequential import sequential
from jrnn._src.streams import bits_per_token, pack_documents, stream_windows
from jrnn._src.tbptt import TruncatedBPTT, truncated_bptt
from jrnn._src.train import Batch, SkipNonFiniteState, TrainStep, skip_nonfinite, supervised_loss, train_step

__all__ = [
    # contracts and the capabilities a cell may declare
    "Cell", "SequenceLayer", "InputShaped", "Preparable", "LinearRecurrence", "Chunkwise", "StateMaskable",
    "RecurrentMatrix",
    "Windowed", "WindowState", "WindowInputs", "Wrapper",
    # cells and their parameters and states
    "ElmanCell", "ElmanParams", "GRUCell", "GRUParams", "LSTMCell", "LSTMParams", "LSTMState", "elman", "gru",
    "lstm", "init",
    # the cells after LSTM and GRU (docs/concepts/modern-cells.md)
    "LayerNormLSTMCell", "LayerNormLSTMParams", "layer_norm_lstm", "LayerNormGRUCell", "LayerNormGRUParams",
    "layer_norm_gru", "IndRNNCell", "IndRNNParams", "indrnn", "indrnn_constraint", "ExpRNNCell", "ExpRNNParams",
    "ExpRNNPrepared", "exprnn", "exprnn_optimizer", "modrelu", "MinGRUCell", "MinGRUParams", "min_gru",
    "MinLSTMCell", "MinLSTMParams", "min_lstm", "ConvLSTMCell", "ConvLSTMParams", "conv_lstm", "MGUCell",
    "MGUParams", "mgu",
    # the modern recurrent family: diagonal linear recurrences (docs/concepts/linear-recurrences.md)
    # (each cell module adds its names here)
    "LRUCell", "LRUParams", "lru", "S5Cell", "S5Params", "s5",
    "RGLRUCell", "RGLRUParams", "rg_lru", "HawkBlockCell", "HawkBlockParams", "hawk_block",
    "MambaCell", "MambaParams", "mamba", "S6Cell", "S6Params", "s6",
    "GatedDeltaNetCell", "GatedDeltaNetParams", "gated_delta_net",
    "Mamba2Cell", "Mamba2Params", "mamba2",
    "MLSTMCell", "MLSTMParams", "MLSTMState", "mlstm", "MLSTMBlockCell", "MLSTMBlockParams", "mlstm_block",
    "SLSTMCell", "SLSTMParams", "SLSTMState", "slstm",
    # the recurrence over time and the layers built on it
    "RNN", "scan", "reverse_sequences", "valid_mask",
    # solvers: how the recurrence over time is evaluated (docs/concepts/scan.md, parallel-in-time.md)
    "Solver", "auto", "sequential", "fused", "associative", "chunked", "deer", "quasi_deer", "elk", "NewtonInfo",
    "newton_scan",
    "FusedKernel", "register_fused_kernel",
    "Bidirectional", "BidirectionalParams", "BidirectionalState", "bidirectional",
    "FunctionMerge", "SeedMerge", "SeedMergeParams", "seed_merge",
    "Deep", "deep", "PreNorm", "PreNormParams", "pre_norm", "Readout", "ReadoutParams", "readout",
    # recurrent regularisation
    "RecurrentDropout", "recurrent_dropout",
    # training through time
    "Batch", "SkipNonFiniteState", "TrainStep", "skip_nonfinite", "supervised_loss", "train_step",
    "last_valid", "masked_cross_entropy", "masked_mse",
    "TruncatedBPTT", "truncated_bptt", "checkpointed_scan",
    # language models and generation
    "LanguageModel", "LanguageModelParams", "language_model", "generate", "sample_logits", "stream_windows",
    "pack_documents", "bits_per_token",
    # gradient-flow diagnostics
    "StateJacobians", "elman_bound", "gradient_report", "plot_gradient_flow", "state_jacobians", "step_grad_norms",
    # checkpoints
    "CheckpointError", "TrainState", "checkpoint_steps", "restore_checkpoint", "save_checkpoint",
    # interoperability and multi-device training
    "TorchRNN", "from_torch", "to_torch", "KerasRNN", "from_keras", "to_keras",
    "FlaxRNN", "from_flax", "to_flax", "EquinoxCell", "from_equinox", "to_equinox", "sharding",
]
