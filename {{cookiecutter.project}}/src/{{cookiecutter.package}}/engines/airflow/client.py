"""Airflow's stable REST API (v2) over plain HTTP, its errors as one-line ReleaseErrors.

Authentication: a token (`AIRFLOW_TOKEN`), a user (`AIRFLOW_USERNAME`, `AIRFLOW_PASSWORD`)
exchanged at `/auth/token`, or Google's Application Default Credentials (Cloud Composer).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from {{ cookiecutter.package }}.errors import ReleaseError


class AirflowClient:
    """Airflow's REST API v2 over plain HTTP, with its errors as one-line ReleaseErrors."""

    def __init__(
        self,
        host: str,
        token: str = "",
        username: str = "",
        password: str = "",
        timeout_s: float = 30,
        google: bool = False,
    ) -> None:
        if not host:
            raise ReleaseError("no Airflow host: set AIRFLOW_HOST (e.g. http://127.0.0.1:8080)")
        self.host, self.timeout_s = host.rstrip("/"), timeout_s
        self._token, self._user, self._google = token, (username, password), google

    def token(self) -> str:
        if not self._token and self._google:
            self._token = google_access_token()
        if not self._token:
            username, password = self._user
            if not username:
                raise ReleaseError(
                    "no Airflow credentials: set AIRFLOW_TOKEN, or AIRFLOW_USERNAME and "
                    "AIRFLOW_PASSWORD"
                )
            answer = self._send(
                "POST", "/auth/token", {"username": username, "password": password}, auth=False
            )
            self._token = str(answer["access_token"])
        return self._token

    def _send(
        self,
        method: str,
        path: str,
        body: Any = None,
        auth: bool = True,
        not_found: type[Exception] = ReleaseError,
    ) -> Any:
        headers = {"content-type": "application/json"}
        if auth:
            headers["authorization"] = f"Bearer {self.token()}"
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.host + path, data, headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as error:
            detail = error.read().decode(errors="replace")[:200]
            if error.code == 404:
                raise not_found(f"Airflow has no {path}: {detail}") from None
            raise ReleaseError(f"Airflow {method} {path}: HTTP {error.code} {detail}") from None
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            raise ReleaseError(f"cannot reach Airflow at {self.host}: {reason}") from None

    def get(self, path: str) -> Any:
        """GET; LookupError when Airflow has no such thing (404)."""
        return self._send("GET", path, not_found=LookupError)

    def post(self, path: str, body: Any) -> Any:
        return self._send("POST", path, body)

    def patch(self, path: str, body: Any) -> Any:
        return self._send("PATCH", path, body)

    def delete(self, path: str) -> None:
        """DELETE; LookupError when Airflow has no such thing (404)."""
        self._send("DELETE", path, not_found=LookupError)


def google_access_token() -> str:
    """An OAuth access token from Application Default Credentials: what Cloud Composer's
    Airflow REST API takes as a bearer token (workload identity in CI, gcloud locally)."""
    import google.auth
    import google.auth.transport.requests
    from google.auth.exceptions import DefaultCredentialsError, GoogleAuthError

    try:
        credentials, _ = google.auth.default(
            scopes=["https://www.googleapis.com/auth/cloud-platform"]
        )
        credentials.refresh(google.auth.transport.requests.Request())
    except DefaultCredentialsError:
        raise ReleaseError(
            "no Google Cloud credentials for Cloud Composer: run `gcloud auth "
            "application-default login` (locally) or use workload identity (CI, cluster)"
        ) from None
    except GoogleAuthError as error:
        raise ReleaseError(f"cannot get a Google access token: {error}") from None
    return str(credentials.token)
