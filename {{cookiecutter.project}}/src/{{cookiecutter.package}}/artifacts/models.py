"""A version's released model: published once, with one commit point, and loaded verified.

Publication cannot be raced: the model's bytes go to a content-addressed object,
`models/{version}/model-{sha256[:16]}.pkl` (two runs never write the same name with other
bytes), then `metadata.json` is written create-only and names that object and its hash. The
metadata is the commit: whoever writes it first released the model; the other run ends with
"already released by another run", and no object that a committed metadata names is ever
replaced.

Every load reads the metadata, then the object it names, and refuses bytes whose sha256 is
not the one recorded. What is trusted is the artifact store itself (who may write to the
bucket or folder): models are pickles, which run code when loaded, so the hash check stops
corruption and a swapped object, not someone who can rewrite the metadata too.
"""

from __future__ import annotations

import hashlib
import json
import pickle
from typing import Any

from {{ cookiecutter.package }}.artifacts.names import ReleaseNames
from {{ cookiecutter.package }}.artifacts.store import AlreadyExistsError, ArtifactStore, StoreError


def released(store: ArtifactStore, names: ReleaseNames) -> bool:
    return store.exists(names.model_metadata_key)


def read_metadata(store: ArtifactStore, names: ReleaseNames) -> dict[str, Any]:
    """The committed metadata of `names.version`'s model; StoreError when there is none."""
    key = names.model_metadata_key
    if not store.exists(key):
        raise StoreError(f"no released model for version {names.version} at {names.uri(key)}")
    try:
        metadata = json.loads(store.read_text(key))
        if not isinstance(metadata, dict) or not {"model_key", "model_sha256"} <= set(metadata):
            raise ValueError("model_key or model_sha256 missing")
    except (ValueError, UnicodeDecodeError) as error:
        raise StoreError(f"{names.uri(key)} is not model metadata: {error}") from None
    return metadata


def verified_bytes(store: ArtifactStore, names: ReleaseNames) -> bytes:
    """The released model's bytes, checked against the sha256 its metadata records."""
    metadata = read_metadata(store, names)
    return _checked(store, names, metadata, "model", "refusing to load an altered model")


def _checked(
    store: ArtifactStore, names: ReleaseNames, metadata: dict[str, Any], kind: str, refusal: str
) -> bytes:
    """The object `metadata[kind_key]` names, if it is the bytes `metadata[kind_sha256]`."""
    key = str(metadata[f"{kind}_key"])
    data = store.read(key)
    if hashlib.sha256(data).hexdigest() != metadata[f"{kind}_sha256"]:
        raise StoreError(
            f"{names.uri(key)} does not match the sha256 recorded in "
            f"{names.uri(names.model_metadata_key)}: {refusal}"
        )
    return data


def load(store: ArtifactStore, names: ReleaseNames) -> Any:
    """The released model of `names.version`, its bytes checked against the metadata."""
    return pickle.loads(verified_bytes(store, names))


def verify(store: ArtifactStore, names: ReleaseNames) -> None:
    """Every object of the released model, the pickle and its numpy form, is the bytes its
    metadata records; StoreError naming the first that is not."""
    verified_bytes(store, names)
    serving_bytes(store, names)


def serving_bytes(store: ArtifactStore, names: ReleaseNames) -> bytes | None:
    """The model's numpy form (`ml.numpy_models`), checked against its recorded sha256;
    None for a model released without one."""
    metadata = read_metadata(store, names)
    if "serving_key" not in metadata:
        return None
    return _checked(store, names, metadata, "serving", "refusing to serve an altered model")


def _write_once(store: ArtifactStore, names: ReleaseNames, key: str, data: bytes) -> None:
    """A content-addressed object: written, or found with the same bytes."""
    try:
        store.write(key, data)
    except AlreadyExistsError:
        if hashlib.sha256(store.read(key)).hexdigest() != hashlib.sha256(data).hexdigest():
            raise StoreError(f"{names.uri(key)} exists with other bytes") from None


def publish(
    store: ArtifactStore,
    names: ReleaseNames,
    model: bytes,
    metadata: dict[str, Any],
    serving: bytes | None = None,
) -> dict[str, Any]:
    """Release `model` with `metadata` (metrics, config, ...), and its numpy form for the
    servers when it has one (`ml.numpy_models`); returns what was committed."""
    digest = hashlib.sha256(model).hexdigest()
    key = names.model_key(digest)
    _write_once(store, names, key, model)
    committed = {
        **metadata,
        "version": names.version,
        "model": names.uri(key),
        "model_key": key,
        "model_sha256": digest,
    }
    if serving is not None:
        serving_digest = hashlib.sha256(serving).hexdigest()
        serving_key = f"models/{names.version}/serving-{serving_digest[:16]}.npz"
        _write_once(store, names, serving_key, serving)
        committed |= {"serving_key": serving_key, "serving_sha256": serving_digest}
    try:
        store.write_text(names.model_metadata_key, json.dumps(committed, indent=2, sort_keys=True))
    except AlreadyExistsError:
        raise AlreadyExistsError(
            f"model {names.version} was already released by another run "
            f"({names.uri(names.model_metadata_key)}); bump the version to train a new one"
        ) from None
    return committed
