"""`fold`: an LLM4MSR model with everything that depends only on frozen knowledge precomputed.

At serving time the knowledge vectors are frozen, so every quantity that depends only on the
user key or the scenario id is a lookup table, not a computation:

- per scenario: the projected scenario knowledge, the scenario tower's generated weights (per
  layer its low-rank factors side by side, ``U_cat`` [D_in, S*r] and ``V_stack`` [S*r, units],
  beside the static kernel; or, where that costs less, the full matrices with the static
  kernel added in, one ``[D_in, S * units]`` matrix) and the
  scenario's share of every user-meta generator's first layer;
- per user (table mode): the projected user knowledge pushed through the user's share of every
  user-meta generator's first layer (``proj(u) @ W_u``, [U + 1, G]; row 0 is the unknown-user
  default, exactly as in the trained model); in ``feature`` form, ``alpha * proj(u)``.

``hidden = relu(W [proj(u); proj(s)] + b) = relu(W_u proj(u) + W_s proj(s) + b)`` splits exactly
into a user row plus a scenario row, so the folded model gives the trained model's outputs up to
float rounding (tested within 1e-5) while the request path is a gather, an add and the small
matmuls that depend on the example's own features. In user-knowledge ``feature`` mode the vector
comes with the request, so its normalisation and projection stay in the graph; the scenario side
is still folded. Lookups are not counted (the counters exist for training diagnostics; TF
Serving cannot read them).
"""
from typing import Any, Dict, List, Optional

import numpy as np

import llm4msr_tf  # noqa: F401  (Keras 2 pin before TensorFlow)
import tensorflow as tf

# Rows projected per chunk when folding large user tables (bounds peak memory).
_CHUNK = 65536


def _const(name: str, value: Any) -> tf.Variable:
    # Non-trainable variables, not graph constants: large tables stay out of the GraphDef
    # (2 GB protobuf limit) and are saved in the SavedModel's variables/ like any weight.
    return tf.Variable(np.asarray(value, np.float32), trainable=False, name=name)


class FoldedLLM4MSR(tf.Module):
    """Inference-only LLM4MSR with knowledge-only work folded into tables (see module docstring).

    Call it like the model: ``folded(features)`` -> ``{"logit", "probability"}`` [B, 1].
    """

    # feature form: fold the per-scenario columns of the tower's input into its first layer's
    # biases (a quarter fewer multiply-adds there, one more concat) or build the whole input in one
    # concat. Measured side by side (MMoE, STAR, ML-100K): equal at batch 1024, the single concat
    # 0.02 ms faster at batch 1 and 64, so it is the default; both are exact (tests).
    FOLD_SCENARIO_COLUMNS = False

    def __init__(self, model: Any, name: Optional[str] = None) -> None:
        """Args:
            model: a built `LLM4MSR` (its weights are read once, now).
        """
        super().__init__(name=name or f"{model.name}_folded")
        self.embedding, self.backbone = model.embedding, model.backbone
        self.num_scenarios = model.num_scenarios
        self.label_key, self.scenario_feature = model.label_key, model.scenario_feature
        self.user_feature, self.user_knowledge_feature = model.user_feature, model.user_knowledge_feature
        self.use_user_meta, self.use_scenario_meta = model.use_user_meta, model.use_scenario_meta
        self.user_meta_form = model.user_meta_form
        self.zero_init = model.zero_init
        # The trained model is kept untracked: only what the folded graph reads is saved (never the
        # wide knowledge tables it was folded from).
        object.__setattr__(self, "_model", model)
        lookup = model.user_knowledge
        # Export reads `.mode` / `.dim` to add the request's knowledge feature in feature mode.
        self.user_knowledge = lookup if lookup is not None and lookup.mode == "feature" else None
        self.user_key_table = getattr(lookup, "table", None) if lookup is not None and lookup.mode == "table" else None
        self.user_projection = model.user_projection if self.user_knowledge is not None else None
        self.user_meta = list(model.user_meta) if self.use_user_meta else []
        self.user_meta_scale = list(getattr(model, "user_meta_scale", []) or [])
        self.scenario_logit = model.scenario_logit if self.use_scenario_meta else None
        object.__setattr__(self, "_tower", [(layer.activation, layer.use_residual) for layer in model.scenario_tower]
                           if self.use_scenario_meta else [])
        if model.scenario_knowledge is None:
            return
        S = model.num_scenarios
        sl = model.scenario_knowledge
        sk = model.scenario_projection(tf.gather(sl.vectors, sl.rows(tf.range(S, dtype=tf.int64)))).numpy()
        # feature form: the last P columns of the meta layer's output are the scaled scenario
        # knowledge, one constant row per scenario, which the tower's first layer folds into its biases.
        self.scenario_cols = 0
        if self.use_user_meta:
            self._fold_user_meta(model, sk)
            if self.user_meta_form == "feature" and self.FOLD_SCENARIO_COLUMNS:
                self.scenario_cols = sk.shape[1]
        if self.use_scenario_meta:
            self._fold_scenario_tower(model, sk)
        if self.use_user_meta:
            self._fuse_user_key(model)

    # ---- folding ------------------------------------------------------------------------------
    def _fold_user_meta(self, model: Any, sk: np.ndarray) -> None:
        P = sk.shape[1]
        lookup = model.user_knowledge
        self.table_mode = lookup.mode == "table"
        if self.table_mode:
            vecs = lookup.vectors.numpy()
            uk = np.concatenate([model.user_projection(tf.constant(vecs[a:a + _CHUNK])).numpy()
                                 for a in range(0, len(vecs), _CHUNK)], axis=0)  # [U + 1, P]
        self.user_tables: List[tf.Variable] = []
        self.scenario_tables: List[tf.Variable] = []
        self.user_kernels: List[tf.Variable] = []  # feature mode: the user share of each first layer
        if model.user_meta_form == "feature":
            alpha = model.user_feature_scale.alpha.numpy()
            parts = [(alpha[:P], alpha[P:])]
        else:
            parts = [(layer.hidden.kernel.numpy(), layer.hidden.bias.numpy()) for layer in model.user_meta]
        for i, (a, b) in enumerate(parts):
            if model.user_meta_form == "feature":
                user_w, scen = np.diag(a), sk * b
            else:
                user_w, scen = a[:P], sk @ a[P:] + b
            self.scenario_tables.append(_const(f"scenario_table_{i}", scen))
            if self.table_mode:
                self.user_tables.append(_const(f"user_table_{i}", uk @ user_w))
            else:
                self.user_kernels.append(_const(f"user_kernel_{i}", user_w))

    def _fold_scenario_tower(self, model: Any, sk: np.ndarray) -> None:
        # Per layer either the factors (x @ [W0 | U_cat] split, then mask(x U) @ V_stack + b) or
        # the full per-scenario matrices (x @ [W0 + U_k V_k^T]_k, row block kept), whichever costs
        # fewer multiply-adds per row: D_in*(units + S*r) + S*r*units vs D_in*S*units. The first
        # layer's rows that read the per-scenario columns of its input move into the biases.
        self.tower_w: List[tf.Variable] = []
        self.tower_b: List[tf.Variable] = []
        self.tower_v: List[Optional[tf.Variable]] = []
        S = sk.shape[0]
        for i, layer in enumerate(model.scenario_tower):
            h = layer.hidden(tf.constant(sk))
            d_in, units, r = layer.d_in, layer.d_out, layer.rank
            cols = self.scenario_cols if i == 0 else 0
            keep = d_in - cols
            const = self.scenario_tables[0].numpy() if cols else None  # [S, cols]: those columns per scenario
            factored = layer.static_kernel and r > 0 and d_in * (units + S * r) + S * r * units < d_in * S * units
            if factored:
                u_cat, v_stack, b = (t.numpy() for t in layer.factors(h))  # [D_in, S*r], [S*r, units], [S, units]
                w0 = layer.kernel.numpy()
                b = b + layer.bias.numpy()[None]
                if cols:
                    xu = (const[:, None, :] @ u_cat[keep:].reshape(cols, S, r).transpose(1, 0, 2))[:, 0]  # [S, r]
                    v = v_stack.reshape(S, r, units)
                    b = b + const @ w0[keep:] + np.einsum("sr,sru->su", xu, v)
                self.tower_w.append(_const(f"tower_w_{i}", np.concatenate([w0[:keep], u_cat[:keep]], axis=1)))
                self.tower_v.append(_const(f"tower_v_{i}", v_stack))
            else:
                w, b = (t.numpy() for t in layer._weights(h))  # [S, D_in, units], [S, units]
                if layer.static_kernel:
                    w = w + layer.kernel.numpy()[None]
                    b = b + layer.bias.numpy()[None]
                if cols:
                    b = b + np.einsum("sc,scu->su", const, w[:, keep:])
                self.tower_w.append(_const(f"tower_w_{i}", np.transpose(w[:, :keep], (1, 0, 2)).reshape(keep, S * units)))
                self.tower_v.append(None)
            self.tower_b.append(_const(f"tower_b_{i}", b))

    def _fuse_user_key(self, model: Any) -> None:
        # Table mode with a vocabulary-embedded string user id: the embedding's vocabulary lookup and
        # the knowledge table's key lookup become one hash lookup into the union of their keys and
        # one gather of [user embedding | folded user rows] (exact: each key gets the embedding row
        # and the knowledge row it got before; keys in neither get row 0 of both).
        self.user_fused = None
        emb, uf = model.embedding, model.user_feature
        f = next((f for f in emb.features if f["name"] == uf), None)
        if not (self.table_mode and self.user_key_table is not None and f is not None and f["kind"] != "numeric"
                and f["dtype"] == "string" and emb.categorical_encoding == "vocab"):
            return
        vocab = [str(v) for v in f["vocabulary"]]
        seen = set(vocab)
        union = vocab + [k for k in model.user_knowledge.keys if k not in seen]
        keys = tf.constant(union, tf.string)
        emb_rows = emb.lookups[uf](keys).numpy()
        k_rows = model.user_knowledge.rows(keys).numpy()
        emb_w = emb.embeddings[uf].embeddings.numpy()
        parts = [np.concatenate([emb_w[:1], emb_w[emb_rows]])]  # row 0: a key in neither
        parts += [np.concatenate([t.numpy()[:1], t.numpy()[k_rows]]) for t in self.user_tables]
        self.user_fused = _const("user_fused_table", np.concatenate(parts, axis=1))
        self.user_fused_widths = [p.shape[1] for p in parts]
        self.user_fused_keys = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(keys, tf.range(1, len(union) + 1, dtype=tf.int64)),
            default_value=tf.constant(0, tf.int64))
        self.user_tables = []  # their rows live in the fused table now

    # ---- inference ---------------------------------------------------------------------------
    def _user_rows(self, features: Dict[str, tf.Tensor], i: int) -> tf.Tensor:
        if self.table_mode:
            keys = tf.reshape(features[self.user_feature], [-1])
            if keys.dtype != tf.string:
                keys = tf.strings.as_string(tf.cast(keys, tf.int64))
            rows = (self.user_key_table.lookup(keys) if self.user_key_table is not None
                    else tf.zeros_like(keys, dtype=tf.int64))
            return tf.gather(self.user_tables[i], rows)
        uk = self.user_projection(self.user_knowledge(features[self.user_knowledge_feature]))
        return tf.matmul(uk, self.user_kernels[i])

    def _embed(self, features: Dict[str, tf.Tensor], append: Any = None) -> Any:
        """The flat embeddings and a function giving each user-meta layer's user rows.

        ``append(user_rows)`` returns tensors to concatenate after the embeddings (same concat).
        """
        if getattr(self, "user_fused", None) is None:
            rows = lambda i: self._user_rows(features, i)  # noqa: E731
            return self.embedding(features, append=append(rows) if append else ()), rows
        keys = tf.reshape(features[self.user_feature], [-1])
        parts = tf.split(tf.gather(self.user_fused, self.user_fused_keys.lookup(keys)), self.user_fused_widths, axis=-1)
        rows = lambda i: parts[1 + i]  # noqa: E731
        x = self.embedding(features, precomputed={self.user_feature: parts[0]}, append=append(rows) if append else ())
        return x, rows

    def __call__(self, features: Dict[str, tf.Tensor], training: Optional[bool] = False) -> Dict[str, tf.Tensor]:
        """Forward pass; the same outputs as the model it was folded from."""
        sid = self._model.scenario_ids(features)
        feature_form = self.use_user_meta and self.user_meta_form == "feature"
        if feature_form and not self.scenario_cols:  # [embeddings, user rows, scenario rows] in one concat
            x, user_rows = self._embed(features, lambda rows: [rows(0), tf.gather(self.scenario_tables[0], sid)])
        else:
            x, user_rows = self._embed(features)
        x_tower = x  # the tower's first-layer input, without the columns folded into its biases
        if self.use_user_meta:
            if feature_form:
                if self.scenario_cols:
                    x_tower = tf.concat([x, user_rows(0)], axis=-1)
                    x = tf.concat([x_tower, tf.gather(self.scenario_tables[0], sid)], axis=-1)
            else:
                for i, layer in enumerate(self.user_meta):
                    h = tf.nn.relu(user_rows(i) + tf.gather(self.scenario_tables[i], sid))
                    y = layer.apply_hidden(x, h)
                    x = x + self.user_meta_scale[i](y) if self.user_meta_form == "lowrank" and self.zero_init else y
                x_tower = x
        logit = self.backbone(x, sid, training=False)
        if self.use_scenario_meta:
            h, full, idx = x_tower, x, tf.cast(sid, tf.int32)
            mask = None
            for (activation, residual), w, v, b in zip(self._tower, self.tower_w, self.tower_v, self.tower_b):
                units = b.shape[1]
                if v is not None:
                    if mask is None:
                        mask = tf.one_hot(idx, self.num_scenarios, dtype=h.dtype)  # [B, S]
                    z = tf.matmul(h, w)  # [B, units + S*r]: static part, then every scenario's x @ U_k
                    m = tf.repeat(mask, v.shape[0] // self.num_scenarios, axis=1)
                    y = z[:, :units] + tf.matmul(z[:, units:] * m, v)
                else:
                    y = tf.reshape(tf.matmul(h, w), [-1, self.num_scenarios, units])
                    y = tf.gather(y, idx, axis=1, batch_dims=1)
                y = activation(y + tf.gather(b, idx))
                h = full = y + full if residual else y
            logit = logit + self.scenario_logit(h)
        logit = tf.reshape(logit, [-1, 1])
        return {"logit": logit, "probability": tf.sigmoid(logit)}


def fold(model: Any) -> Any:
    """The model to serve: `FoldedLLM4MSR` for an LLM4MSR with knowledge, the model itself otherwise."""
    if not getattr(model, "use_knowledge", False) or getattr(model, "scenario_knowledge", None) is None:
        return model
    return FoldedLLM4MSR(model)
