"""gromo (PyPI ``gromo==0.1.0``) used as a TEST ORACLE for the TINY statistics.

This module only *calls* gromo's public growing-module API; it ships no gromo code and
must only be imported from tests.  Given plain torch layers and a batch of data, it
builds gromo's growing modules with the SAME weights, runs gromo's own statistics
machinery (``init_computation`` -> forward -> sum-reduced loss -> ``backward`` ->
``update_computation`` -> ``compute_optimal_updates``) and returns gromo's numbers as a
``dict[str, torch.Tensor]`` so that our implementation can be compared on the same
tensors.

Notation is that of ``methods/growth/MATH.md``: the pair is

    a_{l-1} = W_{l-1} b_{l-2},   b_{l-1} = sigma(a_{l-1}),   a_l = W_l b_{l-1}

``first`` is layer l-1, ``second`` is layer l, ``g = dl_i/da_l`` is the per-sample gradient.

Conventions of gromo (checked against closed forms in ``tests/test_oracle_selfcheck.py``)
------------------------------------------------------------------------------------------
Loss / normalisation
    gromo's statistics are ``TensorStatistic`` objects: each batch adds a SUM over the
    batch (and, for convolutions, over output positions) of outer products, and calling
    the statistic divides by the number of SAMPLES (images / rows of ``x``) seen, never by
    the number of batches nor by the number of spatial positions.  ``g`` is read from
    ``pre_activity.grad``, so the loss must be SUM-reduced for ``g`` to be the per-sample
    gradient (gromo's own ``compute_statistics`` asserts ``reduction == "sum"``).  A
    mean-reduced loss would make every statistic that contains ``g`` (M1, M2, E||g||^2,
    dW, N, alpha, omega, lambda) too small by the batch size (E||g||^2 by its square).
    This oracle always uses a sum-reduced loss:

    * ``loss="ce"``:       ``CrossEntropyLoss(reduction="sum")``      -> g = softmax(z) - onehot(y)
    * ``loss="mse"``:      ``MSELoss(reduction="sum")`` = sum (z-y)^2  -> g = 2 (z - y)   (gromo's default)
    * ``loss="half_mse"``: ``0.5 * MSELoss(reduction="sum")``          -> g = z - y

    For convolutions the loss is applied to ``head(second(...))`` when ``head`` is given
    (e.g. ``lambda z: z.mean((2, 3))``), else directly to the 4-D output (per-pixel CE needs
    ``y`` of shape (n, H, W)).
    Everything is run with the modules in eval mode (matters for BatchNorm only).

Bias layout
    A constant 1 is appended LAST to every input vector (``input_extended``); for convs the
    ones channel is appended after the ``F.unfold`` rows, whose order is
    ``c * kh * kw + i * kw + j`` (channel-major, same as ``weight.flatten(1)``).  Hence
    ``S1`` is (d1+1)x(d1+1) with the bias row/column last, ``M1`` is (d1+1) x d_out,
    ``dW`` is d_out x (d1+1) with the bias as LAST column, ``alpha`` is K x (d2+1) with the
    bias as last column.

Statistics (shapes with bias; drop the "+1" without bias)
    * ``S1`` = E[b1 b1^T]                                  second.tensor_s        (d1+1, d1+1)
    * ``M1`` = E[b1 g^T]                                   second.tensor_m        (d1+1, d_out)
    * ``S2`` = E[b2 b2^T]                                  second.tensor_s_growth (d2+1, d2+1)
    * ``M2`` = E[b2 g^T]                                   second.tensor_m_prev   (d2+1, d_out)
    * ``C``  = E[b2 b1^T]                                  second.cross_covariance (d2+1, d1+1)
    * ``E``  = E[g g^T] (empirical Fisher on a_l),  ``grad_sq`` = trace(E) = E||g||^2
    For convolutions all expectations are "sum over output positions, mean over images".
    Restricted conv (1x1 fan-out at the centre of conv2's kernel): b2 in M2 and C is the
    conv1 unfolded input at the conv1 position sitting at the CENTRE of conv2's receptive
    field (zero when that centre falls into conv2's padding), summed over conv2's output
    positions; but ``S2`` is conv1's own ``tensor_s``, summed over conv1's OUTPUT positions.
    The two position sets coincide only when conv2 is stride 1 with "same" padding; else
    gromo's S2 and M2/C are over different position sets (gromo's approximation).
    Full conv (kxk fan-out): b2 is replaced by the stack over conv2's kernel offsets e of the
    conv1 unfolded inputs at the conv1 positions feeding offset e (zero in the padding):
    ``S2 = E sum_x sum_e b2(x,e) b2(x,e)^T`` (d2+1, d2+1),
    ``M2[b, c*kh*kw + e] = E sum_x b2(x,e)[b] g(x)[c]`` (d2+1, d_out*kh*kw),
    ``C[e, b, d] = E sum_x b2(x,e)[b] b1(x)[d]`` (kh*kw, d2+1, d1+1)  (3-D in gromo!).

Sign of the best update
    gromo stores ``delta_raw = (S1^-1 M1)^T = + M1^T S1^-1`` (a gradient-like direction) and
    APPLIES it as ``W <- W - gamma^2 * delta_raw`` (``apply_change``).  The notes define
    ``dW* = - M1^T S1^-1``.  This oracle returns ``dW = -delta_raw`` (notes' convention, the
    move to ADD to the weights) and ``delta_raw`` (gromo's sign) separately.
    gromo uses ``torch.linalg.solve`` (pinv only if S1 is singular, or in float64 if the
    decrease came out negative).

N, SVD, lambda, alpha, omega
    * ``N = -M2 + C S1^-1 M1 = -M2 + C delta_raw^T`` (gromo's ``tensor_n``), the same sign as
      the notes: N = E[b2 v_proj^T] with v_proj = -g - dW* b1.
      (For the full conv: ``N[b, c*kh*kw+e] = -M2 + sum_d C[e,b,d] delta_raw[c,d]``.)
    * ``S2^{-1/2}``: eigh of S2, eigenvalues <= ``numerical_threshold`` (ABSOLUTE) dropped.
    * ``P = S2^{-1/2} N = U diag(s) V^T`` (thin SVD); gromo's "eigenvalues_extension" are the
      singular values ``s`` of P (NOT squared, not eigenvalues of P P^T).  They are kept when
      ``s >= min(statistical_threshold, s.max())`` (absolute threshold, at least one kept),
      then capped at ``maximum_added_neurons`` (= ``num_neurons``).  Defaults here:
      ``statistical_threshold=0`` so only the cap ``num_neurons`` acts.
    * ``alpha_k = sqrt(s_k) S2^{-1/2} u_k``   -> ``alpha`` is (K, d2[+1]), bias last.
      ``omega_k = sqrt(s_k) v_k``             -> ``omega`` is (d_out, K)  (full conv:
      (d_out*kh*kw, K) rows ordered c*kh*kw + e; ``omega_weight`` is (d_out, K, kh, kw)).
      Singular vectors have an arbitrary joint sign: compare ``omega_k alpha_k^T`` or align
      signs before comparing alpha/omega individually.
    * New neurons are added with a POSITIVE sign: fan-in ``gamma*alpha``, fan-out ``gamma*omega``.

First-order improvement (what gromo reports; L(gamma) ~ L - gamma^2 * FO)
    * ``parameter_update_decrease`` = trace(M1 delta_raw) = tr(M1^T S1^-1 M1) >= 0.
    * ``activation_gradient`` = sigma'(0+) from a lookup table: ReLU -> 1.0 (NOT PyTorch's
      autograd value 0 at 0), Tanh -> 1.0, Identity -> 1.0, GELU/SiLU -> 0.5, Sigmoid -> 0.25.
      A BatchNorm inside ``Sequential(bn, act)`` is ignored (factor 1).
    * ``new_neurons_fo_improvement`` = activation_gradient * sum_{k<=K} s_k^2.
    * ``first_order_improvement`` = parameter_update_decrease + new_neurons_fo_improvement.
    * ``bottleneck_derived`` = grad_sq - parameter_update_decrease = E||v_proj||^2 (computed
      here from gromo's numbers; gromo has no such attribute for a module pair).

Structural facts / disagreements with the notes (all covered by the self-check tests)
    * sigma'(0): gromo uses sigma'(0+) = 1 for ReLU; the notes' FO formula uses sigma'(0), and
      PyTorch's autograd gives ReLU'(0) = 0.  Our FO for ReLU must use 1 to match gromo.
    * gromo's ``delta_raw`` has the opposite sign to the notes' dW* (see above); its
      ``projected_v_goal`` = g - delta_raw b1 = -(v_proj of the notes).  Its (unused by
      TINY) ``LinearGrowingModule.compute_n_update`` therefore accumulates -N, without bias
      column and normalised by rows; the ``tensor_n`` used for the SVD has the notes' sign.
    * dW uses ``torch.linalg.solve``: when S1 is singular (e.g. identity activation with
      d1 > d2 + 1, dead ReLU units) it returns *a* solution, not the min-norm pinv one;
      only ``dW @ S1 = -M1^T`` (i.e. dW b1 on the data), the decrease, N and lambda agree.
    * With a bias on `second`, E[v_proj] = 0, so the bias row of N (last row) is exactly 0;
      with CE, sum_c g_c = 0: rank(N) <= min(d2, d_out - 1).  Extra kept singular values are
      ~0 with arbitrary vectors (statistical_threshold=0 keeps them up to the cap).
    * BatchNorm between conv1 and the activation: gromo's GrowingBatchNorm passes the NEW
      channels through unchanged (identity, no normalisation) and sigma'(0+) ignores BN.

Dtype
    gromo builds helper tensors (ones column, masks, bordering kernels) with the DEFAULT
    dtype and computes dW / SVD in ``dtype=float32`` by default.  The oracle temporarily sets
    the default dtype to ``first.weight.dtype`` and passes that dtype to
    ``compute_optimal_updates``, so float64 in -> float64 out.
"""

from __future__ import annotations

import contextlib
import copy
import warnings
from collections.abc import Callable

import torch
from gromo.modules.conv2d_growing_module import (
    Conv2dGrowingModule,
    FullConv2dGrowingModule,
    RestrictedConv2dGrowingModule,
)
from gromo.modules.growing_normalisation import GrowingBatchNorm2d
from gromo.modules.linear_growing_module import LinearGrowingModule

__all__ = ["gromo_linear_pair", "gromo_conv_pair", "make_loss", "make_activation"]


# --------------------------------------------------------------------------- helpers
def make_activation(activation: str) -> torch.nn.Module:
    """``"relu" | "tanh" | "identity"`` -> torch module (gromo looks sigma'(0+) up by type)."""
    table = {"relu": torch.nn.ReLU, "tanh": torch.nn.Tanh, "identity": torch.nn.Identity}
    if activation not in table:
        raise ValueError(f"unknown activation {activation!r}; expected one of {sorted(table)}")
    return table[activation]()


def make_loss(loss: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """Sum-reduced loss used for the statistics (see module docstring)."""
    if loss == "ce":
        return torch.nn.CrossEntropyLoss(reduction="sum")
    if loss == "mse":
        return torch.nn.MSELoss(reduction="sum")
    if loss == "half_mse":
        mse = torch.nn.MSELoss(reduction="sum")
        return lambda z, y: 0.5 * mse(z, y)
    raise ValueError(f"unknown loss {loss!r}; expected 'ce', 'mse' or 'half_mse'")


@contextlib.contextmanager
def _default_dtype(dtype: torch.dtype):
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(old)


def _chunks(x: torch.Tensor, y: torch.Tensor, batch_size: int | None):
    n = x.shape[0]
    bs = n if batch_size is None else int(batch_size)
    for i in range(0, n, bs):
        yield x[i : i + bs], y[i : i + bs]


def _copy_layer(dst: torch.nn.Module, src: torch.nn.Module) -> None:
    with torch.no_grad():
        dst.weight.copy_(src.weight)
        if src.bias is not None:
            dst.bias.copy_(src.bias)


def _collect(second, first_use_bias: bool, loss_total: float, n: int) -> dict[str, torch.Tensor]:
    """Read everything gromo computed on ``second`` (after compute_optimal_updates)."""
    out: dict[str, torch.Tensor] = {}
    out["S1"] = second.tensor_s().detach().clone()
    out["M1"] = second.tensor_m().detach().clone()
    out["S2"] = second.tensor_s_growth().detach().clone()
    out["M2"] = second.tensor_m_prev().detach().clone()
    out["C"] = second.cross_covariance().detach().clone()
    out["E"] = second.covariance_loss_gradient().detach().clone()
    out["grad_sq"] = torch.trace(out["E"])
    delta_raw = second.delta_raw.detach().clone()
    out["delta_raw"] = delta_raw  # gromo sign: + M1^T S1^-1
    out["dW"] = -delta_raw  # notes' sign: dW* = - M1^T S1^-1, bias = last column
    if second.use_bias:
        out["dW_weight"] = -delta_raw[:, :-1].reshape(second.weight.shape)
        out["dW_bias"] = -delta_raw[:, -1]
    else:
        out["dW_weight"] = -delta_raw.reshape(second.weight.shape)
    out["N"] = second.tensor_n.detach().clone()
    out["eigenvalues"] = second.eigenvalues_extension.detach().clone()
    alpha_layer = second.previous_module.extended_output_layer
    alpha_w = alpha_layer.weight.detach().flatten(1)
    if first_use_bias:
        out["alpha"] = torch.cat([alpha_w, alpha_layer.bias.detach()[:, None]], dim=1)
        out["alpha_bias"] = alpha_layer.bias.detach().clone()
    else:
        out["alpha"] = alpha_w.clone()
    out["alpha_weight"] = alpha_layer.weight.detach().clone()
    out["parameter_update_decrease"] = torch.as_tensor(second.parameter_update_decrease).detach().clone()
    out["activation_gradient"] = torch.as_tensor(second.activation_gradient).detach().clone()
    out["new_neurons_fo_improvement"] = second.new_neurons_fo_improvement.detach().clone()
    out["first_order_improvement"] = second.first_order_improvement.detach().clone()
    out["bottleneck_derived"] = out["grad_sq"] - out["parameter_update_decrease"]
    out["loss"] = torch.tensor(loss_total, dtype=out["S1"].dtype)
    out["n_samples"] = torch.tensor(n)
    return out


def _run_statistics(net: Callable, second, x, y, loss_fn, batch_size) -> tuple[float, int]:
    second.init_computation()
    total, n = 0.0, 0
    for xb, yb in _chunks(x, y, batch_size):
        out = net(xb)
        loss = loss_fn(out, yb)
        loss.backward()
        second.update_computation()
        total += float(loss.detach())
        n += xb.shape[0]
    assert second.tensor_s.samples == n, (second.tensor_s.samples, n)
    return total, n


# --------------------------------------------------------------------------- linear
def gromo_linear_pair(
    first: torch.nn.Linear,
    second: torch.nn.Linear,
    activation: str,
    x: torch.Tensor,
    y: torch.Tensor,
    loss: str = "ce",
    num_neurons: int = 3,
    *,
    numerical_threshold: float = 1e-10,
    statistical_threshold: float = 0.0,
    batch_size: int | None = None,
) -> dict[str, torch.Tensor]:
    """gromo's TINY numbers for ``second(act(first(x)))`` with a sum-reduced ``loss``.

    Parameters
    ----------
    first, second: the two linear layers (weights are copied, not modified).
    activation: ``"relu" | "tanh" | "identity"`` applied after ``first``.
    x: (n, d2) input; y: class indices (``"ce"``) or targets of shape (n, d_out) (mse).
    loss: ``"ce"`` = CrossEntropyLoss(sum); ``"mse"`` = sum of squares (no 1/2, g = 2(z-y));
        ``"half_mse"`` = 0.5 * sum of squares (g = z - y).
    num_neurons: cap K on the number of neurons (``maximum_added_neurons``).
    numerical_threshold: absolute eigenvalue threshold of S2 in S2^{-1/2}.
    statistical_threshold: absolute threshold on singular values (0 => only the cap acts).
    batch_size: feed x in chunks of this size (exercises gromo's accumulation); None = one batch.

    Returns
    -------
    dict with keys (see the module docstring for exact definitions and layouts):
    ``S1, M1, S2, M2, C, E, grad_sq, delta_raw, dW, dW_weight, dW_bias, N, eigenvalues,
    alpha, alpha_weight, alpha_bias, omega, parameter_update_decrease, activation_gradient,
    new_neurons_fo_improvement, first_order_improvement, bottleneck_derived, loss, n_samples``
    (``dW_bias`` / ``alpha_bias`` only when the corresponding layer has a bias).
    ``omega`` is (d_out, K), ``alpha`` is (K, d2[+1]).
    """
    dtype = first.weight.dtype
    device = first.weight.device
    loss_fn = make_loss(loss)
    x = x.to(device=device, dtype=dtype)
    y = y.to(device=device)
    if y.is_floating_point():
        y = y.to(dtype)
    with _default_dtype(dtype), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        l1 = LinearGrowingModule(
            first.in_features,
            first.out_features,
            use_bias=first.bias is not None,
            post_layer_function=make_activation(activation),
            device=device,
            name="first",
        )
        l2 = LinearGrowingModule(
            second.in_features,
            second.out_features,
            use_bias=second.bias is not None,
            previous_module=l1,
            allow_growing=True,
            device=device,
            name="second",
        )
        l1.next_module = l2
        _copy_layer(l1.layer, first)
        _copy_layer(l2.layer, second)
        net = torch.nn.Sequential(l1, l2).eval()
        total, n = _run_statistics(net, l2, x, y, loss_fn, batch_size)
        l2.compute_optimal_updates(
            numerical_threshold=numerical_threshold,
            statistical_threshold=statistical_threshold,
            maximum_added_neurons=num_neurons,
            dtype=dtype,
        )
        out = _collect(l2, first.bias is not None, total, n)
        out["omega"] = l2.extended_input_layer.weight.detach().clone()  # (d_out, K)
        l2.reset_computation()
    return out


# --------------------------------------------------------------------------- conv
def gromo_conv_pair(
    first: torch.nn.Conv2d,
    second: torch.nn.Conv2d,
    activation: str,
    x: torch.Tensor,
    y: torch.Tensor,
    loss: str = "ce",
    num_neurons: int = 3,
    full_fan_out: bool = False,
    bn: torch.nn.BatchNorm2d | None = None,
    *,
    head: Callable[[torch.Tensor], torch.Tensor] | None = None,
    numerical_threshold: float = 1e-10,
    statistical_threshold: float = 0.0,
    batch_size: int | None = None,
) -> dict[str, torch.Tensor]:
    """gromo's TINY numbers for ``second(act(bn(first(x))))``: new channels grow conv1.out = conv2.in.

    ``full_fan_out=False`` uses gromo's ``RestrictedConv2dGrowingModule`` for ``second`` (new
    channels get a 1x1 fan-out at the centre of conv2's kernel); ``True`` uses
    ``FullConv2dGrowingModule`` (full kh x kw fan-out).  ``first`` is a plain
    ``Conv2dGrowingModule``.  ``bn`` (optional, applied between conv1 and the activation, in
    eval mode with its running statistics) is copied into a gromo ``GrowingBatchNorm2d``;
    gromo's sigma'(0+) ignores it.  ``head`` (optional) maps conv2's 4-D output to what the
    loss sees (e.g. ``lambda z: z.mean((2, 3))`` for class logits); it must not contain
    parameters that should be grown.  Other parameters as in :func:`gromo_linear_pair`.

    Returns the same keys as :func:`gromo_linear_pair` with
    d1 = C1*kh2*kw2, d2 = C0*kh1*kw1 (unfold order, bias row last), statistics summed over
    output positions and averaged over images.  Differences:

    * ``omega``: restricted -> (C_out, K) (the centre tap); full -> (C_out*kh2*kw2, K), rows
      ordered ``c*kh2*kw2 + e``, i.e. the columns of ``N``; ``omega_weight`` is the
      (C_out, K, kh2, kw2) kernel gromo would add to conv2 (restricted: zeros except centre).
    * ``alpha``: (K, C0*kh1*kw1 [+1]); ``alpha_weight`` is (K, C0, kh1, kw1).
    * full: ``M2`` and ``N`` are (d2[+1], C_out*kh2*kw2); ``C`` is (kh2*kw2, d2[+1], d1[+1]).
    """
    dtype = first.weight.dtype
    device = first.weight.device
    loss_fn = make_loss(loss)
    x = x.to(device=device, dtype=dtype)
    y = y.to(device=device)
    if y.is_floating_point():
        y = y.to(dtype)
    if first.groups != 1 or second.groups != 1:
        raise ValueError("gromo supports groups=1 only")
    second_cls = FullConv2dGrowingModule if full_fan_out else RestrictedConv2dGrowingModule

    def conv_kwargs(c: torch.nn.Conv2d) -> dict:
        return dict(
            in_channels=c.in_channels,
            out_channels=c.out_channels,
            kernel_size=c.kernel_size,
            stride=c.stride,
            padding=c.padding,
            dilation=c.dilation,
            use_bias=c.bias is not None,
            device=device,
        )

    with _default_dtype(dtype), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        act = make_activation(activation)
        if bn is not None:
            gbn = GrowingBatchNorm2d(
                bn.num_features,
                eps=bn.eps,
                momentum=bn.momentum,
                affine=bn.affine,
                track_running_stats=bn.track_running_stats,
                device=device,
                dtype=dtype,
            )
            gbn.load_state_dict(copy.deepcopy(bn.state_dict()))
            post = torch.nn.Sequential(gbn, act)
        else:
            post = act
        c1 = Conv2dGrowingModule(**conv_kwargs(first), post_layer_function=post, name="first")
        c2 = second_cls(**conv_kwargs(second), previous_module=c1, allow_growing=True, name="second")
        c1.next_module = c2
        _copy_layer(c1.layer, first)
        _copy_layer(c2.layer, second)
        modules = [c1, c2] + ([_Lambda(head)] if head is not None else [])
        net = torch.nn.Sequential(*modules).eval()
        total, n = _run_statistics(net, c2, x, y, loss_fn, batch_size)
        c2.compute_optimal_updates(
            numerical_threshold=numerical_threshold,
            statistical_threshold=statistical_threshold,
            maximum_added_neurons=num_neurons,
            dtype=dtype,
        )
        out = _collect(c2, first.bias is not None, total, n)
        w = c2.extended_input_layer.weight.detach().clone()  # (C_out, K, kh2, kw2)
        out["omega_weight"] = w
        if full_fan_out:
            out["omega"] = w.permute(0, 2, 3, 1).reshape(-1, w.shape[1])
        else:
            kh, kw = second.kernel_size
            out["omega"] = w[:, :, kh // 2, kw // 2].clone()
        c2.reset_computation()
    return out


class _Lambda(torch.nn.Module):
    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor]):
        super().__init__()
        self.fn = fn

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.fn(z)
