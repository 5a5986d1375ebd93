"""Drop-in replacements for torch.nn.LSTM, GRU, LSTMCell and GRUCell.

Each subclasses its torch.nn twin: construction, parameters, their names and
initialisation, ``state_dict``, ``flatten_parameters``, ``extra_repr`` and
``_apply`` are torch.nn's own code, and ``isinstance(m, nn.LSTM)`` holds.
Only ``forward`` is new: it repeats torch.nn's Python-side logic and checks
line for line (same order, same messages) and computes with the rnnfuse ops
instead of ``_VF``. Dynamo refuses to trace nn.LSTM / nn.GRU instances unless
told otherwise; rnnfuse/_dynamo.py tells it so for these classes only.

Some calls go to torch.nn's forward instead:
  * graph recording (ONNX export, torch.export, TorchScript tracing): the
    recorded graph then holds the standard ``aten.lstm`` / ``aten.gru`` ops
    that exporters translate and that run without rnnfuse; torch.jit.script
    compiles a torch.nn twin (rnnfuse/_twin.py);
  * inputs the ops cannot take (mixed dtypes or devices, misshapen states or
    weights, an empty sequence): these are the checks torch.nn leaves to
    ATen, whose errors depend on the code path, so torch.nn is asked to
    raise its own error (see ``_driver.supported``).

The modules keep no state of their own beyond torch.nn's, which is what lets
``rnnfuse.convert`` swap an instance's class in place.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence

from . import _autocast, _driver, _dynamo, _twin
from ._twin import recording_graph

__all__ = ["LSTM", "GRU", "LSTMCell", "GRUCell"]


def _rnn_weight_shapes(m: nn.RNNBase, gates: int):
    """Shapes of ``m._flat_weights`` as torch.nn's constructor makes them."""
    dirs = 2 if m.bidirectional else 1
    hidden = m.hidden_size
    out = m.proj_size if m.proj_size > 0 else hidden
    for layer in range(m.num_layers):
        layer_in = m.input_size if layer == 0 else out * dirs
        for _ in range(dirs):
            yield (gates * hidden, layer_in)
            yield (gates * hidden, out)
            if m.bias:
                yield (gates * hidden,)
                yield (gates * hidden,)
            if m.proj_size > 0:
                yield (out, hidden)


def _cell_weight_shapes(m: nn.RNNCellBase, gates: int):
    rows = gates * m.hidden_size
    shapes = [(rows, m.input_size), (rows, m.hidden_size)]
    return shapes + [(rows,), (rows,)] if m.bias else shapes


_CELL_WEIGHTS = {True: ("weight_ih", "weight_hh", "bias_ih", "bias_hh"),
                 False: ("weight_ih", "weight_hh")}


def _cell_weights(m: nn.RNNCellBase):
    names = _CELL_WEIGHTS[bool(m.bias)]
    if not torch.compiler.is_compiling():
        # Straight from the parameter dict: a cell call is short enough that
        # nn.Module.__getattr__ per weight shows in it. A parametrized weight
        # (a property, not in the dict) takes the attribute path.
        params = m._parameters
        try:
            return [params[name] for name in names]
        except KeyError:
            pass
    return [getattr(m, name) for name in names]


def _rows(input: torch.Tensor, batch_sizes: torch.Tensor | None, batch_first: bool):
    """The input as the ops take it: ``(seq_len, batch, n_rows, rows)``.

    Padded (T, B, I) or (B, T, I) input becomes (T * B, I) time-major rows;
    packed data already is that, and ``n_rows`` is then what its
    ``batch_sizes`` promise (torch.nn does not check packed LSTM input).
    """
    if batch_sizes is not None:
        return batch_sizes.size(0), int(batch_sizes[0]), int(batch_sizes.sum()), input
    if batch_first:
        input = input.transpose(0, 1)
    seq_len, batch = input.size(0), input.size(1)
    return seq_len, batch, seq_len * batch, input.reshape(seq_len * batch, input.size(2))


def _unflatten_output(y: torch.Tensor, input: torch.Tensor, batch_first: bool):
    """(T * B, F) rows -> the layout of the (batched, 3-D) ``input``."""
    if batch_first:
        return y.view(input.size(1), input.size(0), y.size(1)).transpose(0, 1)
    return y.view(input.size(0), input.size(1), y.size(1))


class LSTM(_twin.TorchNNTwin, nn.LSTM):
    __doc__ = nn.LSTM.__doc__
    _torch_class = nn.LSTM

    def forward(self, input, hx=None):  # noqa: C901 (mirrors torch.nn.LSTM.forward)
        if recording_graph():
            return super().forward(input, hx)
        self._check_not_quantized()
        self._update_flat_weights()

        orig_input, orig_hx = input, hx
        batch_sizes = None
        num_directions = 2 if self.bidirectional else 1
        real_hidden_size = self.proj_size if self.proj_size > 0 else self.hidden_size
        if isinstance(orig_input, PackedSequence):
            input, batch_sizes, sorted_indices, unsorted_indices = input
            max_batch_size = batch_sizes[0]
            if hx is None:
                h_zeros = torch.zeros(
                    self.num_layers * num_directions, max_batch_size, real_hidden_size,
                    dtype=input.dtype, device=input.device)
                c_zeros = torch.zeros(
                    self.num_layers * num_directions, max_batch_size, self.hidden_size,
                    dtype=input.dtype, device=input.device)
                hx = (h_zeros, c_zeros)
            else:
                # Like torch.nn, the packed path does not check hx here;
                # _driver.supported below catches what ATen would reject.
                hx = self.permute_hidden(hx, sorted_indices)
        else:
            if input.dim() not in (2, 3):
                raise ValueError(
                    f"LSTM: Expected input to be 2D or 3D, got {input.dim()}D instead")
            is_batched = input.dim() == 3
            batch_dim = 0 if self.batch_first else 1
            if not is_batched:
                input = input.unsqueeze(batch_dim)
            max_batch_size = input.size(0) if self.batch_first else input.size(1)
            sorted_indices = None
            unsorted_indices = None
            if hx is None:
                h_zeros = torch.zeros(
                    self.num_layers * num_directions, max_batch_size, real_hidden_size,
                    dtype=input.dtype, device=input.device)
                c_zeros = torch.zeros(
                    self.num_layers * num_directions, max_batch_size, self.hidden_size,
                    dtype=input.dtype, device=input.device)
                hx = (h_zeros, c_zeros)
                self.check_forward_args(input, hx, batch_sizes)
            else:
                if is_batched:
                    if hx[0].dim() != 3 or hx[1].dim() != 3:
                        raise RuntimeError(
                            "For batched 3-D input, hx and cx should "
                            f"also be 3-D but got ({hx[0].dim()}-D, {hx[1].dim()}-D) tensors")
                else:
                    if hx[0].dim() != 2 or hx[1].dim() != 2:
                        raise RuntimeError(
                            "For unbatched 2-D input, hx and cx should "
                            f"also be 2-D but got ({hx[0].dim()}-D, {hx[1].dim()}-D) tensors")
                    hx = (hx[0].unsqueeze(1), hx[1].unsqueeze(1))
                self.check_forward_args(input, hx, batch_sizes)
                hx = self.permute_hidden(hx, sorted_indices)

        seq_len, batch, n_rows, rows = _rows(input, batch_sizes, self.batch_first)
        states = tuple(hx) if isinstance(hx, (tuple, list)) else (hx,)
        shapes = [
            (n_rows, self.input_size),
            (self.num_layers * num_directions, batch, real_hidden_size),
            (self.num_layers * num_directions, batch, self.hidden_size),
            *_rnn_weight_shapes(self, 4),
        ]
        plan = _autocast.plan(rows, lstm=True, cell=False, packed=batch_sizes is not None,
                              proj=self.proj_size > 0)
        if seq_len == 0 or not _driver.supported(
                rows, (rows, *states, *self._flat_weights), shapes, plan):
            return super().forward(orig_input, orig_hx)

        output, hidden = _driver.rnn(
            self.mode, rows, batch_sizes, states, self._flat_weights,
            has_bias=self.bias, has_proj=self.proj_size > 0,
            num_layers=self.num_layers, bidirectional=self.bidirectional,
            dropout=self.dropout, training=self.training, plan=plan)

        if isinstance(orig_input, PackedSequence):
            output_packed = PackedSequence(output, batch_sizes, sorted_indices, unsorted_indices)
            return output_packed, self.permute_hidden(hidden, unsorted_indices)
        output = _unflatten_output(output, input, self.batch_first)
        if not is_batched:
            output = output.squeeze(batch_dim)
            hidden = (hidden[0].squeeze(1), hidden[1].squeeze(1))
        return output, self.permute_hidden(hidden, unsorted_indices)


class GRU(_twin.TorchNNTwin, nn.GRU):
    __doc__ = nn.GRU.__doc__
    _torch_class = nn.GRU

    def forward(self, input, hx=None):  # noqa: C901 (mirrors torch.nn.GRU.forward)
        if recording_graph():
            return super().forward(input, hx)
        self._check_not_quantized()
        self._update_flat_weights()

        orig_input, orig_hx = input, hx
        num_directions = 2 if self.bidirectional else 1
        if isinstance(orig_input, PackedSequence):
            input, batch_sizes, sorted_indices, unsorted_indices = input
            max_batch_size = batch_sizes[0]
            if hx is None:
                hx = torch.zeros(
                    self.num_layers * num_directions, max_batch_size, self.hidden_size,
                    dtype=input.dtype, device=input.device)
            else:
                hx = self.permute_hidden(hx, sorted_indices)
        else:
            batch_sizes = None
            if input.dim() not in (2, 3):
                raise ValueError(
                    f"GRU: Expected input to be 2D or 3D, got {input.dim()}D instead")
            is_batched = input.dim() == 3
            batch_dim = 0 if self.batch_first else 1
            if not is_batched:
                input = input.unsqueeze(batch_dim)
                if hx is not None:
                    if hx.dim() != 2:
                        raise RuntimeError(
                            "For unbatched 2-D input, hx should also be 2-D but got "
                            f"{hx.dim()}-D tensor")
                    hx = hx.unsqueeze(1)
            else:
                if hx is not None and hx.dim() != 3:
                    raise RuntimeError(
                        f"For batched 3-D input, hx should also be 3-D but got {hx.dim()}-D tensor")
            max_batch_size = input.size(0) if self.batch_first else input.size(1)
            sorted_indices = None
            unsorted_indices = None
            if hx is None:
                hx = torch.zeros(
                    self.num_layers * num_directions, max_batch_size, self.hidden_size,
                    dtype=input.dtype, device=input.device)
            else:
                hx = self.permute_hidden(hx, sorted_indices)

        self.check_forward_args(input, hx, batch_sizes)

        seq_len, batch, n_rows, rows = _rows(input, batch_sizes, self.batch_first)
        shapes = [
            (n_rows, self.input_size),
            (self.num_layers * num_directions, batch, self.hidden_size),
            *_rnn_weight_shapes(self, 3),
        ]
        plan = _autocast.plan(rows, lstm=False, cell=False, packed=batch_sizes is not None)
        if seq_len == 0 or not _driver.supported(
                rows, (rows, hx, *self._flat_weights), shapes, plan):
            return super().forward(orig_input, orig_hx)

        output, (hidden,) = _driver.rnn(
            self.mode, rows, batch_sizes, (hx,), self._flat_weights,
            has_bias=self.bias, has_proj=False,
            num_layers=self.num_layers, bidirectional=self.bidirectional,
            dropout=self.dropout, training=self.training, plan=plan)

        if isinstance(orig_input, PackedSequence):
            output_packed = PackedSequence(output, batch_sizes, sorted_indices, unsorted_indices)
            return output_packed, self.permute_hidden(hidden, unsorted_indices)
        output = _unflatten_output(output, input, self.batch_first)
        if not is_batched:
            output = output.squeeze(batch_dim)
            hidden = hidden.squeeze(1)
        return output, self.permute_hidden(hidden, unsorted_indices)


class LSTMCell(_twin.TorchNNTwin, nn.LSTMCell):
    __doc__ = nn.LSTMCell.__doc__
    _torch_class = nn.LSTMCell

    def forward(self, input, hx=None):
        if recording_graph():
            return super().forward(input, hx)
        self._check_not_quantized()
        orig_input, orig_hx = input, hx
        if input.dim() not in (1, 2):
            raise ValueError(
                f"LSTMCell: Expected input to be 1D or 2D, got {input.dim()}D instead")
        if hx is not None:
            for idx, value in enumerate(hx):
                if value.dim() not in (1, 2):
                    raise ValueError(
                        f"LSTMCell: Expected hx[{idx}] to be 1D or 2D, got {value.dim()}D instead")
        is_batched = input.dim() == 2
        if not is_batched:
            input = input.unsqueeze(0)
        if hx is None:
            zeros = torch.zeros(
                input.size(0), self.hidden_size, dtype=input.dtype, device=input.device)
            hx = (zeros, zeros)
        else:
            hx = (hx[0].unsqueeze(0), hx[1].unsqueeze(0)) if not is_batched else hx

        weights = _cell_weights(self)
        state_shape = (input.size(0), self.hidden_size)
        shapes = [(input.size(0), self.input_size), state_shape, state_shape,
                  *_cell_weight_shapes(self, 4)]
        plan = _autocast.plan(input, lstm=True, cell=True)
        if len(hx) != 2 or not _driver.supported(input, (input, *hx, *weights), shapes, plan):
            return super().forward(orig_input, orig_hx)

        w_ih, w_hh, b_ih, b_hh = (*weights, None, None) if len(weights) == 2 else weights
        ret = _driver.lstm_cell(input, hx[0], hx[1], w_ih, w_hh, b_ih, b_hh, plan)
        if not is_batched:
            ret = (ret[0].squeeze(0), ret[1].squeeze(0))
        return ret


class GRUCell(_twin.TorchNNTwin, nn.GRUCell):
    __doc__ = nn.GRUCell.__doc__
    _torch_class = nn.GRUCell

    def forward(self, input, hx=None):
        if recording_graph():
            return super().forward(input, hx)
        self._check_not_quantized()
        orig_input, orig_hx = input, hx
        if input.dim() not in (1, 2):
            raise ValueError(
                f"GRUCell: Expected input to be 1D or 2D, got {input.dim()}D instead")
        if hx is not None and hx.dim() not in (1, 2):
            raise ValueError(
                f"GRUCell: Expected hidden to be 1D or 2D, got {hx.dim()}D instead")
        is_batched = input.dim() == 2
        if not is_batched:
            input = input.unsqueeze(0)
        if hx is None:
            hx = torch.zeros(
                input.size(0), self.hidden_size, dtype=input.dtype, device=input.device)
        else:
            hx = hx.unsqueeze(0) if not is_batched else hx

        weights = _cell_weights(self)
        shapes = [(input.size(0), self.input_size), (input.size(0), self.hidden_size),
                  *_cell_weight_shapes(self, 3)]
        plan = _autocast.plan(input, lstm=False, cell=True)
        if not _driver.supported(input, (input, hx, *weights), shapes, plan):
            return super().forward(orig_input, orig_hx)

        w_ih, w_hh, b_ih, b_hh = (*weights, None, None) if len(weights) == 2 else weights
        ret = _driver.gru_cell(input, hx, w_ih, w_hh, b_ih, b_hh, plan)
        if not is_batched:
            ret = ret.squeeze(0)
        return ret


_twin.allow_in_weights_only_checkpoints(LSTM, GRU, LSTMCell, GRUCell)
_dynamo.install()
