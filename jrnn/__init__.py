"""jrnn: recurrent neural networks in JAX.

The seed's Elman RNN ``s_t = f(U x_t + W s_{t-1})``, ``o_t = g(V s_t)``, the LSTM and the GRU as pure cells;
``jrnn.scan`` for the recurrence over time (length-aware, either direction); bidirectional and deep networks as
compositions of that scan; exact BPTT from ``jax.grad``; PyTorch weights in and out.
"""

from jrnn import init
from jrnn._src.bidirectional import Bidirectional, BidirectionalParams, BidirectionalState, bidirectional
from jrnn._src.deep import Deep, deep
from jrnn._src.elman import ElmanCell, ElmanParams, elman
from jrnn._src.gru import GRUCell, GRUParams, gru
from jrnn._src.lstm import LSTMCell, LSTMParams, LSTMState, lstm
from jrnn._src.merge import FunctionMerge, SeedMerge, SeedMergeParams, seed_merge
from jrnn._src.readout import Readout, ReadoutParams, readout
from jrnn._src.scan import RNN, reverse_sequences, scan, valid_mask
from jrnn._src.torch_interop import TorchRNN, from_torch, to_torch
from jrnn._src.types import Cell, SequenceLayer

__version__ = "0.1.0"

__all__ = [
    "Bidirectional", "BidirectionalParams", "BidirectionalState", "Cell", "Deep", "ElmanCell", "ElmanParams",
    "FunctionMerge", "GRUCell", "GRUParams", "LSTMCell", "LSTMParams", "LSTMState", "RNN", "Readout",
    "ReadoutParams", "SeedMerge", "SeedMergeParams", "SequenceLayer", "TorchRNN", "bidirectional", "deep", "elman", "from_torch", "gru",
    "init", "lstm", "readout", "reverse_sequences", "scan", "seed_merge", "to_torch", "valid_mask",
]
