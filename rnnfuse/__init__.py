"""rnnfuse: fused LSTM and GRU kernels for PyTorch, as drop-in torch.nn modules."""
from .convert import convert, revert
from .modules import GRU, LSTM, GRUCell, LSTMCell

__all__ = ["LSTM", "GRU", "LSTMCell", "GRUCell", "convert", "revert"]
