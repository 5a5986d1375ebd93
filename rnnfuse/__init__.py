"""rnnfuse: fused LSTM and GRU kernels for PyTorch, as drop-in torch.nn modules."""
from .convert import convert, revert
from .memory import cpu_cache_info, empty_cpu_cache
from .modules import GRU, LSTM, GRUCell, LSTMCell

__all__ = ["LSTM", "GRU", "LSTMCell", "GRUCell", "convert", "revert", "cpu_cache_info", "empty_cpu_cache"]
