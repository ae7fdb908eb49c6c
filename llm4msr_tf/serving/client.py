"""Clients for an exported llm4msr SavedModel: TF Serving over REST or gRPC, or in-process.

All three expose the same two calls, one per signature of `llm4msr_tf.serving.signatures`:

- ``predict_examples(serialized)``: serialized tf.Examples -> ``serving_default``;
- ``predict_raw(features)``: dict name -> 1-D array of raw feature values -> ``predict_raw``;

and return ``{"probability": float32 [B, 1], "logit": float32 [B, 1]}`` numpy arrays.

The request builders (`RestClient.build_request`, `GrpcClient.build_request`) are separate
from the transport so they can be checked without a server.
"""
import base64
import json
import logging
import urllib.error
import urllib.request
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from llm4msr_tf.serving.signatures import EXAMPLES_INPUT, OUTPUT_KEYS, RAW_SIGNATURE, SERVING_SIGNATURE
from llm4msr_tf.serving.versions import find_saved_model
from llm4msr_tf.utils.io import UserInputError

log = logging.getLogger(__name__)

DEFAULT_REST_PORT = 8501
DEFAULT_GRPC_PORT = 8500


class ServingError(RuntimeError):
    """The server (or the in-process model) rejected a request; the message is the server's."""


def parse_host_port(target: str, default_port: int) -> Tuple[str, int]:
    """'host:port' (or 'host', or 'http://host:port') -> (host, port), with a clear error."""
    t = target
    for prefix in ("http://", "https://", "grpc://"):
        if t.startswith(prefix):
            t = t[len(prefix):]
    t = t.rstrip("/")
    if not t:
        raise UserInputError(f"server address {target!r} is empty; use HOST:PORT")
    host, _, port = t.rpartition(":") if ":" in t else (t, "", str(default_port))
    try:
        port_i = int(port)
    except ValueError:
        raise UserInputError(f"server address {target!r}: port {port!r} is not a number") from None
    import re

    if not re.fullmatch(r"[A-Za-z0-9._-]+|\[[0-9A-Fa-f:.]+\]", host or ""):
        raise UserInputError(f"server address {target!r}: {host!r} is not a host name or IP address; "
                             "use HOST:PORT, e.g. localhost:8501")
    if not 0 < port_i < 65536:
        raise UserInputError(f"server address {target!r}: port {port_i} is outside 1..65535")
    return host, port_i


def _normalise_outputs(outputs: Mapping[str, Any]) -> Dict[str, np.ndarray]:
    missing = [k for k in OUTPUT_KEYS if k not in outputs]
    if missing:
        raise ServingError(f"response lacks outputs {missing}; got {sorted(outputs)}")
    return {k: np.asarray(outputs[k], dtype=np.float32).reshape(-1, 1) for k in OUTPUT_KEYS}


def _as_list(name: str, values: Any) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise UserInputError(f"feature {name!r} must be a 1-D batch of values, got shape {arr.shape}")
    return arr


def _check_batch(features: Mapping[str, Any]) -> int:
    sizes = {k: len(_as_list(k, v)) for k, v in features.items()}
    if len(set(sizes.values())) > 1:
        raise UserInputError(f"features have different batch sizes: {sizes}")
    return next(iter(sizes.values())) if sizes else 0


# ---------------------------------------------------------------------------------------
# REST
# ---------------------------------------------------------------------------------------
def _json_value(v: Any) -> Any:
    """One tensor element in TF Serving's JSON: bytes as {"b64": ...}, numpy scalars as Python."""
    if isinstance(v, (bytes, np.bytes_)):
        try:
            return bytes(v).decode("utf-8")
        except UnicodeDecodeError:
            return {"b64": base64.b64encode(bytes(v)).decode("ascii")}
    if isinstance(v, np.generic):
        return v.item()
    return v


class RestClient:
    """TF Serving REST Predict API (``POST /v1/models/NAME[/versions/V]:predict``)."""

    def __init__(self, target: str = f"localhost:{DEFAULT_REST_PORT}", model_name: str = "llm4msr",
                 version: Optional[int] = None, timeout: float = 30.0):
        host, port = parse_host_port(target, DEFAULT_REST_PORT)
        self.base = f"http://{host}:{port}"
        self.model_name = model_name
        self.version = version
        self.timeout = timeout

    @property
    def url(self) -> str:
        """The :predict endpoint of the model (and version, when pinned)."""
        path = f"/v1/models/{self.model_name}"
        if self.version is not None:
            path += f"/versions/{int(self.version)}"
        return self.base + path + ":predict"

    def build_request(self, serialized: Optional[Sequence[bytes]] = None,
                      features: Optional[Mapping[str, Any]] = None) -> Dict[str, Any]:
        """The JSON body (columnar "inputs" form) for tf.Examples or raw features."""
        if (serialized is None) == (features is None):
            raise UserInputError("pass exactly one of serialized examples or raw features")
        if serialized is not None:
            # Serialized protos are binary: TF Serving's JSON carries them base64 in {"b64": ...}.
            return {
                "signature_name": SERVING_SIGNATURE,
                "inputs": {EXAMPLES_INPUT: [{"b64": base64.b64encode(bytes(s)).decode("ascii")}
                                            for s in serialized]},
            }
        _check_batch(features)
        return {
            "signature_name": RAW_SIGNATURE,
            "inputs": {k: [_json_value(v) for v in _as_list(k, vals)] for k, vals in features.items()},
        }

    @staticmethod
    def parse_response(body: Mapping[str, Any]) -> Dict[str, np.ndarray]:
        """Outputs of a columnar ("outputs") or row ("predictions") REST response."""
        if "error" in body:
            raise ServingError(str(body["error"]))
        if "outputs" in body:
            return _normalise_outputs(body["outputs"])
        if "predictions" in body:
            rows = body["predictions"]
            return _normalise_outputs({k: [r[k] for r in rows] for k in OUTPUT_KEYS})
        raise ServingError(f"unexpected REST response keys {sorted(body)}")

    def _post(self, body: Dict[str, Any]) -> Dict[str, np.ndarray]:
        data = json.dumps(body).encode("utf-8")
        req = urllib.request.Request(self.url, data=data, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return self.parse_response(json.loads(resp.read()))
        except urllib.error.HTTPError as e:
            text = e.read().decode("utf-8", "replace")
            try:
                msg = json.loads(text).get("error", text)
            except ValueError:
                msg = text
            raise ServingError(f"{self.url} answered HTTP {e.code}: {msg}") from None
        except urllib.error.URLError as e:
            raise UserInputError(
                f"cannot reach TF Serving at {self.url} ({e.reason}); is the server running "
                "(see serving/README.md)?"
            ) from None

    def predict_examples(self, serialized: Sequence[bytes]) -> Dict[str, np.ndarray]:
        """Score serialized tf.Examples through `serving_default`."""
        return self._post(self.build_request(serialized=serialized))

    def predict_raw(self, features: Mapping[str, Any]) -> Dict[str, np.ndarray]:
        """Score raw feature arrays through `predict_raw`."""
        return self._post(self.build_request(features=features))


# ---------------------------------------------------------------------------------------
# gRPC
# ---------------------------------------------------------------------------------------
class GrpcClient:
    """TF Serving gRPC PredictionService.Predict."""

    def __init__(self, target: str = f"localhost:{DEFAULT_GRPC_PORT}", model_name: str = "llm4msr",
                 version: Optional[int] = None, timeout: float = 30.0,
                 max_message_bytes: int = 64 << 20):
        host, port = parse_host_port(target, DEFAULT_GRPC_PORT)
        self.target = f"{host}:{port}"
        self.model_name = model_name
        self.version = version
        self.timeout = timeout
        self.max_message_bytes = max_message_bytes
        self._stub = None

    def build_request(self, serialized: Optional[Sequence[bytes]] = None,
                      features: Optional[Mapping[str, Any]] = None) -> Any:
        """A `tensorflow_serving.apis.predict_pb2.PredictRequest` for tf.Examples or raw features."""
        import tensorflow as tf
        from tensorflow_serving.apis import predict_pb2

        if (serialized is None) == (features is None):
            raise UserInputError("pass exactly one of serialized examples or raw features")
        req = predict_pb2.PredictRequest()
        req.model_spec.name = self.model_name
        if self.version is not None:
            req.model_spec.version.value = int(self.version)
        if serialized is not None:
            req.model_spec.signature_name = SERVING_SIGNATURE
            req.inputs[EXAMPLES_INPUT].CopyFrom(
                tf.make_tensor_proto([bytes(s) for s in serialized], dtype=tf.string))
        else:
            _check_batch(features)
            req.model_spec.signature_name = RAW_SIGNATURE
            for k, vals in features.items():
                arr = _as_list(k, vals)
                if arr.dtype.kind in ("U", "O"):
                    arr = np.array([v.encode() if isinstance(v, str) else v for v in arr], dtype=object)
                elif arr.dtype.kind in ("i", "u"):
                    arr = arr.astype(np.int64)  # the signature's int features are int64
                elif arr.dtype.kind == "f":
                    arr = arr.astype(np.float32)
                req.inputs[k].CopyFrom(tf.make_tensor_proto(arr))
        return req

    @staticmethod
    def parse_response(resp: Any) -> Dict[str, np.ndarray]:
        """Outputs of a PredictResponse as numpy arrays."""
        import tensorflow as tf

        return _normalise_outputs({k: tf.make_ndarray(v) for k, v in resp.outputs.items()})

    def _call(self, req: Any) -> Dict[str, np.ndarray]:
        import grpc
        from tensorflow_serving.apis import prediction_service_pb2_grpc

        if self._stub is None:
            opts = [("grpc.max_send_message_length", self.max_message_bytes),
                    ("grpc.max_receive_message_length", self.max_message_bytes)]
            channel = grpc.insecure_channel(self.target, options=opts)
            self._stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        try:
            return self.parse_response(self._stub.Predict(req, timeout=self.timeout))
        except grpc.RpcError as e:
            if e.code() == grpc.StatusCode.UNAVAILABLE:
                raise UserInputError(
                    f"cannot reach TF Serving gRPC at {self.target} ({e.details()}); is the server "
                    "running (see serving/README.md)?") from None
            raise ServingError(f"{self.target} answered {e.code().name}: {e.details()}") from None

    def predict_examples(self, serialized: Sequence[bytes]) -> Dict[str, np.ndarray]:
        """Score serialized tf.Examples through `serving_default`."""
        return self._call(self.build_request(serialized=serialized))

    def predict_raw(self, features: Mapping[str, Any]) -> Dict[str, np.ndarray]:
        """Score raw feature arrays through `predict_raw`."""
        return self._call(self.build_request(features=features))


# ---------------------------------------------------------------------------------------
# In-process
# ---------------------------------------------------------------------------------------
class LocalClient:
    """Runs the exported SavedModel in this process (`tf.saved_model.load`), no server needed."""

    def __init__(self, saved_model_dir: str):
        import tensorflow as tf

        self.path = find_saved_model(saved_model_dir)
        self._loaded = tf.saved_model.load(self.path)
        missing = [s for s in (SERVING_SIGNATURE, RAW_SIGNATURE) if s not in self._loaded.signatures]
        if SERVING_SIGNATURE in missing:
            raise UserInputError(f"{self.path} has no {SERVING_SIGNATURE!r} signature; export it "
                                 "with `llm4msr export`")
        self._raw_specs = (self._loaded.signatures[RAW_SIGNATURE].structured_input_signature[1]
                           if not missing else None)

    @property
    def raw_input_names(self) -> Sequence[str]:
        """Feature names `predict_raw` expects (empty if the SavedModel has no such signature)."""
        return sorted(self._raw_specs) if self._raw_specs else []

    def _run(self, fn: Any, kwargs: Dict[str, Any]) -> Dict[str, np.ndarray]:
        import tensorflow as tf

        try:
            out = fn(**kwargs)
        except tf.errors.InvalidArgumentError as e:
            raise ServingError(e.message) from None
        except UnicodeDecodeError:
            # TF's Python wrapper cannot decode an error message that echoes non-UTF-8 request
            # bytes (a garbled tf.Example); TF Serving itself returns INVALID_ARGUMENT.
            raise ServingError("Could not parse example input: the request holds bytes that are "
                               "not a serialized tf.Example") from None
        return _normalise_outputs({k: v.numpy() for k, v in out.items()})

    def predict_examples(self, serialized: Sequence[bytes]) -> Dict[str, np.ndarray]:
        """Score serialized tf.Examples through `serving_default`."""
        import tensorflow as tf

        return self._run(self._loaded.signatures[SERVING_SIGNATURE],
                         {EXAMPLES_INPUT: tf.constant([bytes(s) for s in serialized])})

    def predict_raw(self, features: Mapping[str, Any]) -> Dict[str, np.ndarray]:
        """Score raw feature arrays through `predict_raw`."""
        import tensorflow as tf

        if self._raw_specs is None:
            raise UserInputError(f"{self.path} has no {RAW_SIGNATURE!r} signature")
        missing = sorted(set(self._raw_specs) - set(features))
        if missing:
            raise UserInputError(f"predict_raw needs features {missing} (expects {self.raw_input_names})")
        _check_batch(features)
        kwargs = {k: tf.constant(np.asarray(features[k]), dtype=s.dtype)
                  for k, s in self._raw_specs.items()}
        return self._run(self._loaded.signatures[RAW_SIGNATURE], kwargs)


def with_user_knowledge(serialized: Sequence[bytes], lookup: Any, user_feature: str = "user_id",
                        feature: str = "user_knowledge", default: Optional[Sequence[float]] = None) -> List[bytes]:
    """Add each example's user knowledge vector (feature mode requests) from a key-value lookup.

    A model trained with ``user_knowledge_mode="feature"`` has no user table: every request
    carries the user's vector as `feature` (float [dim]). `lookup` is what the caller serves the
    vectors from: a mapping or any object with ``get(user_key)`` (a Redis / Bigtable / feature
    store client wrapper) returning a float sequence or None. Users it does not know get
    `default` (use the vector ``llm4msr join-knowledge`` used in training: the mean of the
    knowledge base's user vectors by default); with no default they raise.

    Args:
        serialized: serialized tf.Examples without the vector.
        lookup: user key (str, as the knowledge base spells it) -> vector or None.
        user_feature, feature: the user id feature and the vector feature of the model.
        default: the vector for users `lookup` does not know.

    Returns:
        The serialized examples with `feature` set.
    """
    import tensorflow as tf

    out = []
    for raw in serialized:
        ex = tf.train.Example.FromString(raw)
        f = ex.features.feature[user_feature]
        vals = list(f.bytes_list.value) or list(f.int64_list.value)
        if len(vals) != 1:
            raise UserInputError(f"an example has {len(vals)} values of {user_feature!r}, expected 1")
        key = vals[0].decode("utf-8") if isinstance(vals[0], bytes) else str(int(vals[0]))
        vec = lookup.get(key)
        if vec is None:
            if default is None:
                raise UserInputError(f"no knowledge vector for user {key!r} and no default vector given")
            vec = default
        ex.features.feature[feature].float_list.value[:] = np.asarray(vec, np.float32).reshape(-1).tolist()
        out.append(ex.SerializeToString())
    return out


def make_client(local: Optional[str] = None, rest: Optional[str] = None, grpc: Optional[str] = None,
                model_name: str = "llm4msr", version: Optional[int] = None,
                timeout: float = 30.0) -> Any:
    """One of LocalClient / RestClient / GrpcClient; exactly one target must be given."""
    given = [n for n, v in (("--local", local), ("--rest", rest), ("--grpc", grpc)) if v]
    if len(given) != 1:
        raise UserInputError(f"pass exactly one of --local PATH, --rest HOST:PORT, --grpc HOST:PORT "
                             f"(got {given or 'none'})")
    if local:
        return LocalClient(local)
    if rest:
        return RestClient(rest, model_name, version, timeout)
    return GrpcClient(grpc, model_name, version, timeout)
