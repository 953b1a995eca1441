"""The artifact store on Google Cloud Storage (`gs://bucket/prefix`): `store.ArtifactStore`
through google-cloud-storage. A create-only write carries `if_generation_match=0`, so the
server itself refuses to replace a released object (412)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from {{ cookiecutter.package }}.artifacts.store_interface import (
    AlreadyExistsError,
    ArtifactStore,
    StoreError,
)

DEFAULT_TIMEOUT_S = 60.0


class GCSStore(ArtifactStore):
    """`gs://bucket/prefix` through google-cloud-storage; credentials from the environment
    (ADC or workload identity). STORAGE_EMULATOR_HOST points it at an emulator.

    Every call is bounded: each HTTP request by `timeout_s`, and the client's retries of
    transient errors by the same deadline. Whatever fails (no credentials, the service
    unreachable or answering errors) becomes one StoreError naming the store.
    """

    def __init__(self, root: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        # `import ... as`: with typed google.cloud packages beside it (bigquery), mypy reads
        # google.cloud as a package without an untyped `storage` attribute.
        import google.cloud.storage as storage
        from google.cloud.storage.retry import DEFAULT_RETRY

        self.root = root.rstrip("/")
        bucket_name, _, prefix = self.root.removeprefix("gs://").partition("/")
        self.prefix = f"{prefix}/" if prefix else ""
        self.calls = {"timeout": timeout_s, "retry": DEFAULT_RETRY.with_timeout(timeout_s)}
        with self._errors("connect to"):
            if os.environ.get("STORAGE_EMULATOR_HOST"):
                from google.auth.credentials import AnonymousCredentials

                client = storage.Client(credentials=AnonymousCredentials(), project="emulator")
            else:
                client = storage.Client()
        self.bucket = client.bucket(bucket_name)

    @contextmanager
    def _errors(self, action: str, key: str = "") -> Iterator[None]:
        from google.api_core.exceptions import GoogleAPIError, NotFound, PreconditionFailed
        from google.auth.exceptions import DefaultCredentialsError, GoogleAuthError
        from requests.exceptions import RequestException

        where = self.uri(key) if key else self.root
        try:
            yield
        except NotFound:
            raise StoreError(f"{where} does not exist") from None
        except PreconditionFailed:  # only create-only writes carry a precondition
            raise AlreadyExistsError(
                f"{where} already exists; released artifacts are immutable"
            ) from None
        except DefaultCredentialsError:
            raise StoreError(
                f"no Google Cloud credentials to {action} {where}: run `gcloud auth "
                "application-default login` (locally) or use workload identity (CI, cluster)"
            ) from None
        except (GoogleAPIError, GoogleAuthError, RequestException, OSError) as error:
            first = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
            raise StoreError(f"cannot {action} {where}: {first}") from None

    def _blob(self, key: str):
        return self.bucket.blob(self.prefix + key)

    def exists(self, key: str) -> bool:
        with self._errors("read", key):
            return bool(self._blob(key).exists(**self.calls))

    def read(self, key: str) -> bytes:
        with self._errors("read", key):
            return bytes(self._blob(key).download_as_bytes(**self.calls))

    def write(self, key: str, data: bytes) -> None:
        with self._errors("write", key):
            # Generation 0 means "no live object": the server refuses to overwrite (412).
            self._blob(key).upload_from_string(data, if_generation_match=0, **self.calls)

    def replace(self, key: str, data: bytes) -> None:
        with self._errors("write", key):
            self._blob(key).upload_from_string(data, **self.calls)

    def list(self, prefix: str = "") -> list[str]:
        with self._errors("list", prefix):
            blobs = self.bucket.client.list_blobs(
                self.bucket, prefix=self.prefix + prefix, **self.calls
            )
            return sorted(blob.name[len(self.prefix) :] for blob in blobs)

    def size(self, key: str) -> int:
        with self._errors("read", key):
            blob = self.bucket.get_blob(self.prefix + key, **self.calls)
        if blob is None:
            raise StoreError(f"{self.uri(key)} does not exist")
        return int(blob.size or 0)

    def delete(self, key: str) -> bool:
        from google.api_core.exceptions import NotFound

        with self._errors("delete", key):
            try:
                self._blob(key).delete(**self.calls)
            except NotFound:
                return False
        return True

    def check(self) -> None:
        with self._errors("reach"):
            exists = self.bucket.exists(**self.calls)
        if not exists:
            raise StoreError(f"bucket {self.bucket.name} does not exist")
