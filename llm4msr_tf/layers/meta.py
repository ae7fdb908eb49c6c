"""The meta layer of LLM4MSR: a dense layer whose weights are generated per example.

The paper's equations were not available; this is our reading of "meta layer whose
parameters are generated from the knowledge vector", and every choice is a config option:

    W(c), b(c) = generator(c)           # c: conditioning vector [B, C] (projected knowledge)
    y = act(x @ (W0 + W(c)) + b0 + b(c)) [+ x]

- ``generator``: a one-hidden-layer MLP (``generator_units``) from ``c``; its weight head is
  initialised small so training starts close to the static layer (stable start).
- ``rank=0``: full-rank ``W(c)`` of shape [B, D_in, units]. ``rank=r>0``: low-rank
  ``W(c) = U(c) V(c)^T`` with U [B, D_in, r], V [B, units, r] - far fewer generated
  numbers for wide inputs (the default, since embeddings are F x 16 wide).
- ``static_kernel``: also learn a shared ``W0, b0`` so the generated part is a per-example
  correction.
- ``residual``: add ``x`` when ``units == D_in`` ("auto" does exactly that).

`KnowledgeGate` is the gating alternative (PEPNet's gate unit, Chang et al., KDD 2023):
``y = x * 2 * sigmoid(g(c))`` with ``g`` a one-hidden-layer MLP whose output layer is
zero-initialised, so the gate starts at exactly 1. `OutputScale` is a trainable per-dimension
scale (ReZero-style, zero-initialised) that lets a residual branch start switched off.

Speed: the generated weights are linear in the generator's hidden state, so ``call`` never
materialises per-example matrices; it contracts x with the head kernels in plain matmuls
(1.4x faster than batched mat-vecs on CPU). ``generate`` still returns W(c) for inspection.
"""
from typing import Any, Dict, Optional, Tuple, Union

import llm4msr_tf  # noqa: F401  (Keras 2 pin before TensorFlow)
import tensorflow as tf


PACKAGE = "llm4msr_tf"


@tf.keras.utils.register_keras_serializable(package=PACKAGE)
class MetaDense(tf.keras.layers.Layer):
    """Hypernetwork dense layer: ``act(x @ W(c) + b(c)) + x`` with W, b generated from ``c``."""

    def __init__(
        self,
        units: Optional[int] = None,
        rank: int = 8,
        generator_units: int = 64,
        activation: Optional[str] = "relu",
        residual: Union[bool, str] = "auto",
        static_kernel: bool = True,
        init_scale: float = 0.1,
        l2: float = 0.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.l2 = float(l2)
        self.units = None if units is None else int(units)
        self.rank = int(rank)
        self.generator_units = int(generator_units)
        self.activation_name = activation
        self.activation = tf.keras.activations.get(activation)
        self.residual = residual
        self.static_kernel = bool(static_kernel)
        self.init_scale = float(init_scale)
        if self.rank < 0:
            raise ValueError(f"MetaDense rank must be >= 0 (0 = full rank), got {rank}")

    def build(self, input_shape: Any) -> None:
        """Create the weights once the input width is known."""
        x_shape = input_shape[0]
        d_in = int(x_shape[-1])
        self.d_in = d_in
        self.d_out = self.units or d_in
        if self.residual == "auto":
            self.use_residual = self.d_out == d_in
        else:
            self.use_residual = bool(self.residual)
            if self.use_residual and self.d_out != d_in:
                raise ValueError(
                    f"MetaDense residual=True needs units == input width ({self.d_out} != {d_in})")
        reg = tf.keras.regularizers.L2(self.l2) if self.l2 > 0 else None
        self.hidden = tf.keras.layers.Dense(self.generator_units, activation="relu", kernel_regularizer=reg,
                                            name="gen_hidden")
        # Small init: the generated weights start as a gentle per-example correction.
        def small() -> tf.keras.initializers.Initializer:
            return tf.keras.initializers.VarianceScaling(scale=self.init_scale ** 2, mode="fan_in")

        if self.rank == 0:
            self.w_head = tf.keras.layers.Dense(d_in * self.d_out, kernel_initializer=small(),
                                                kernel_regularizer=reg, name="gen_w")
        else:
            self.u_head = tf.keras.layers.Dense(d_in * self.rank, kernel_initializer=small(),
                                                kernel_regularizer=reg, name="gen_u")
            self.v_head = tf.keras.layers.Dense(self.d_out * self.rank, kernel_initializer=small(),
                                                kernel_regularizer=reg, name="gen_v")
        self.b_head = tf.keras.layers.Dense(self.d_out, kernel_initializer=small(), kernel_regularizer=reg,
                                            name="gen_b")
        # call() reads the heads' kernels directly, so build them here.
        cond_width = int(input_shape[1][-1])
        self.hidden.build((None, cond_width))
        for head in (self.w_head,) if self.rank == 0 else (self.u_head, self.v_head):
            head.build((None, self.generator_units))
        self.b_head.build((None, self.generator_units))
        if self.static_kernel:
            self.kernel = self.add_weight(
                name="kernel", shape=(d_in, self.d_out), initializer="glorot_uniform", trainable=True)
            self.bias = self.add_weight(name="bias", shape=(self.d_out,), initializer="zeros", trainable=True)
        super().build(input_shape)

    def generate(self, condition: tf.Tensor) -> Tuple[tf.Tensor, tf.Tensor]:
        """The generated per-example weights ``W(c)`` [B, D_in, units] and bias ``b(c)`` [B, units]."""
        return self._weights(self.hidden(condition))

    def _weights(self, h: tf.Tensor) -> Tuple[tf.Tensor, tf.Tensor]:
        """``W, b`` materialised from generator hidden states h [N, G] (N conditions)."""
        if self.rank == 0:
            w = tf.reshape(self.w_head(h), [-1, self.d_in, self.d_out])
        else:
            u = tf.reshape(self.u_head(h), [-1, self.d_in, self.rank])
            v = tf.reshape(self.v_head(h), [-1, self.d_out, self.rank])
            w = tf.einsum("bir,bor->bio", u, v)
        return w, self.b_head(h)

    def call(self, inputs: Any) -> tf.Tensor:
        """``[x, c]`` with c [B, C]; or ``[x, c, index]`` with c [K, C] and index [B] picking each row's c.

        The indexed form generates the weights once per distinct condition (e.g. S scenarios):
        for up to ``ALL_CONDITIONS_MAX`` conditions it applies every condition's weights in
        one matmul and keeps each row's block; beyond that it gathers each row's generator state
        and runs the per-example form.
        """
        x, condition = inputs[0], inputs[1]
        index = inputs[2] if len(inputs) > 2 else None
        h = self.hidden(condition)
        if index is not None:
            index = tf.cast(tf.reshape(index, [-1]), tf.int32)
            num_conditions = condition.shape[0]
            if num_conditions is not None and num_conditions <= self.ALL_CONDITIONS_MAX:
                y = self._all_conditions(x, h, index)
            else:
                y = self._per_example(x, tf.gather(h, index))
        else:
            return self.apply_hidden(x, h)
        return self._finish(x, y)

    def apply_hidden(self, x: tf.Tensor, h: tf.Tensor) -> tf.Tensor:
        """The layer's output from x [B, D_in] and each row's generator hidden state h [B, G].

        ``call([x, c])`` is ``apply_hidden(x, hidden(c))``; a caller that already has h (e.g.
        folded from lookup tables at export) skips the generator's first layer.
        """
        return self._finish(x, self._per_example(x, h))

    def static_output(self, x: tf.Tensor) -> tf.Tensor:
        """The layer's output with the generated part removed: ``act(x @ W0 + b0) [+ x]``.

        What the layer computes when the knowledge adds nothing (``W(c) = 0, b(c) = 0``); used
        to measure what the knowledge changes (`LLM4MSR.decompose`).
        """
        return self._finish(x, tf.zeros([tf.shape(x)[0], self.d_out], x.dtype))

    def _finish(self, x: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
        if self.static_kernel:
            y = y + tf.matmul(x, self.kernel) + self.bias
        y = self.activation(y)
        return y + x if self.use_residual else y

    # Conditions up to which the indexed form multiplies x by every condition's weights.
    ALL_CONDITIONS_MAX = 32

    def _all_conditions(self, x: tf.Tensor, h: tf.Tensor, index: tf.Tensor) -> tf.Tensor:
        """``x @ W(c_k) + b(c_k)`` for every condition k at once, row k=index kept.

        Low rank (when cheaper than the full matrices): ``xu = x @ [U_1 .. U_K]`` in one
        [B, D_in] x [D_in, K*r] matmul, the blocks of other conditions masked to zero, then
        ``xu @ [V_1; ..; V_K]^T`` in one [B, K*r] x [K*r, units] matmul - the same numbers as
        ``x @ U_k V_k^T`` without building any [D_in, units] matrix. Otherwise every W_k is built
        and x is multiplied by all of them in one [D_in, K*units] matmul.
        """
        k = int(h.shape[0])
        if self.low_rank_cheaper():
            u_cat, v_stack, b = self.factors(h)
            mask = tf.repeat(tf.one_hot(index, k, dtype=x.dtype), self.rank, axis=1)  # [B, K*r]
            return tf.matmul(tf.matmul(x, u_cat) * mask, v_stack) + tf.gather(b, index)
        w, b = self._weights(h)  # [K, D_in, units], [K, units]
        w_cat = tf.reshape(tf.transpose(w, [1, 0, 2]), [self.d_in, -1])  # [D_in, K*units]
        y_all = tf.reshape(tf.matmul(x, w_cat), [-1, k, self.d_out])  # [B, K, units]
        return tf.gather(y_all, index, axis=1, batch_dims=1) + tf.gather(b, index)

    def low_rank_cheaper(self) -> bool:
        """Whether applying conditions through their factors costs fewer multiply-adds per row
        and condition (``r * (D_in + units)``) than through their full matrices (``D_in * units``)."""
        return 0 < self.rank and self.rank * (self.d_in + self.d_out) < self.d_in * self.d_out

    def factors(self, h: tf.Tensor) -> Tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        """The generated factors of K conditions side by side, from their generator states h [K, G]:
        ``U_cat`` [D_in, K*r] (column block k = U(c_k)), ``V_stack`` [K*r, units] (row block k =
        V(c_k)^T) and the biases b [K, units]; ``W(c_k) = U_cat[:, k] @ V_stack[k]``."""
        r = self.rank
        u = tf.reshape(self.u_head(h), [-1, self.d_in, r])
        v = tf.reshape(self.v_head(h), [-1, self.d_out, r])
        u_cat = tf.reshape(tf.transpose(u, [1, 0, 2]), [self.d_in, -1])
        v_stack = tf.reshape(tf.transpose(v, [0, 2, 1]), [-1, self.d_out])
        return u_cat, v_stack, self.b_head(h)

    def _per_example(self, x: tf.Tensor, h: tf.Tensor) -> tf.Tensor:
        """``x @ W(c) + b(c)`` row by row, from each row's generator hidden state h [B, G].

        The generated weights are linear in h, so instead of materialising per-example
        matrices (batched mat-vecs, slow on CPU) the contraction runs as plain matmuls:
        full rank ``y = (h (x) x) @ K_w``; low rank ``xu = sum_g h_g (x @ K_u[g])`` and
        ``y = (h (x) xu) @ K_v`` - the same numbers as ``x @ U(c) @ V(c)^T``.
        """
        g = self.generator_units
        b = self.b_head(h)
        if self.rank == 0:
            kw = tf.reshape(self.w_head.kernel, [g * self.d_in, self.d_out])
            hx = tf.reshape(h[:, :, None] * x[:, None, :], [-1, g * self.d_in])
            y = tf.matmul(hx, kw) + tf.matmul(x, tf.reshape(self.w_head.bias, [self.d_in, self.d_out]))
            return y + b
        r = self.rank
        ku = tf.reshape(tf.transpose(tf.reshape(self.u_head.kernel, [g, self.d_in, r]), [1, 0, 2]),
                        [self.d_in, g * r])
        t = tf.reshape(tf.matmul(x, ku), [-1, g, r])  # t[b, g, r] = x_b @ K_u[g]
        xu = tf.reduce_sum(t * h[:, :, None], axis=1) + tf.matmul(x, tf.reshape(self.u_head.bias, [self.d_in, r]))
        kv = tf.reshape(tf.transpose(tf.reshape(self.v_head.kernel, [g, self.d_out, r]), [0, 2, 1]),
                        [g * r, self.d_out])
        hxu = tf.reshape(h[:, :, None] * xu[:, None, :], [-1, g * r])
        y = tf.matmul(hxu, kv) + tf.matmul(xu, tf.reshape(self.v_head.bias, [self.d_out, r]), transpose_b=True)
        return y + b

    def get_config(self) -> Dict[str, Any]:
        """Constructor arguments, for from_config and Keras saving."""
        cfg = super().get_config()
        cfg.update(units=self.units, rank=self.rank, generator_units=self.generator_units,
                   activation=self.activation_name, residual=self.residual,
                   static_kernel=self.static_kernel, init_scale=self.init_scale, l2=self.l2)
        return cfg


@tf.keras.utils.register_keras_serializable(package=PACKAGE)
class KnowledgeGate(tf.keras.layers.Layer):
    """Element-wise gate from a condition: ``x * 2 * sigmoid(g(c))``, starting at exactly ``x``.

    ``g`` is ``Dense(generator_units, relu) -> Dense(width of x)``; with ``zero_init`` the output
    layer's kernel and bias start at zero, so the gate is 1 and the layer is the identity until
    training moves it (the fusion then starts as the backbone alone).
    """

    def __init__(self, generator_units: int = 64, zero_init: bool = True, l2: float = 0.0,
                 **kwargs: Any) -> None:
        """Args:
            generator_units: hidden width of the gate network.
            zero_init: start the gate at exactly 1.
            l2: L2 penalty on the gate network's kernels.
        """
        super().__init__(**kwargs)
        if int(generator_units) < 1:
            raise ValueError(f"KnowledgeGate generator_units must be >= 1, got {generator_units}")
        self.generator_units = int(generator_units)
        self.zero_init = bool(zero_init)
        self.l2 = float(l2)

    def build(self, input_shape: Any) -> None:
        """Create the gate network for the widths of ``x`` and ``c``."""
        d_in, cond_width = int(input_shape[0][-1]), int(input_shape[1][-1])
        reg = tf.keras.regularizers.L2(self.l2) if self.l2 > 0 else None
        self.hidden = tf.keras.layers.Dense(self.generator_units, activation="relu", kernel_regularizer=reg,
                                            name="gate_hidden")
        self.out = tf.keras.layers.Dense(
            d_in, kernel_initializer="zeros" if self.zero_init else "glorot_uniform",
            kernel_regularizer=reg, name="gate_out")
        self.hidden.build((None, cond_width))
        self.out.build((None, self.generator_units))
        super().build(input_shape)

    def gate(self, condition: tf.Tensor) -> tf.Tensor:
        """The gate values ``2 * sigmoid(g(c))`` [N, width of x], in (0, 2)."""
        return 2.0 * tf.sigmoid(self.out(self.hidden(condition)))

    def call(self, inputs: Any) -> tf.Tensor:
        """``[x, c]`` -> ``x * gate(c)``."""
        x, condition = inputs[0], inputs[1]
        return x * self.gate(condition)

    def apply_hidden(self, x: tf.Tensor, h: tf.Tensor) -> tf.Tensor:
        """``x * 2 sigmoid(out(h))`` from the gate network's hidden state h [B, G] (skips its first layer)."""
        return x * (2.0 * tf.sigmoid(self.out(h)))

    def get_config(self) -> Dict[str, Any]:
        """Constructor arguments, for from_config and Keras saving."""
        cfg = super().get_config()
        cfg.update(generator_units=self.generator_units, zero_init=self.zero_init, l2=self.l2)
        return cfg


@tf.keras.utils.register_keras_serializable(package=PACKAGE)
class OutputScale(tf.keras.layers.Layer):
    """``x * alpha`` with a trainable per-dimension ``alpha`` (initial value ``init``, 0 = switched off)."""

    def __init__(self, init: float = 0.0, **kwargs: Any) -> None:
        """Args:
            init: initial value of every entry of ``alpha``.
        """
        super().__init__(**kwargs)
        self.init = float(init)

    def build(self, input_shape: Any) -> None:
        """Create ``alpha`` for the last dimension of the input."""
        self.alpha = self.add_weight(name="alpha", shape=(int(input_shape[-1]),),
                                     initializer=tf.keras.initializers.Constant(self.init), trainable=True)
        super().build(input_shape)

    def call(self, x: tf.Tensor) -> tf.Tensor:
        """``x * alpha``."""
        return x * self.alpha

    def get_config(self) -> Dict[str, Any]:
        """Constructor arguments, for from_config and Keras saving."""
        cfg = super().get_config()
        cfg.update(init=self.init)
        return cfg
