"""Validate every answer before cookiecutter writes a single file.

The answers arrive as JSON (``tojson``) inside a raw string and are parsed with
``json.loads``: a value is never pasted into Python source, so quotes, backslashes
or newlines in an answer cannot change what this hook does.

The functions are importable so the template's tests call them directly.
"""

from __future__ import annotations

import json
import keyword
import re
import sys
from typing import Any

SLUG = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")
PACKAGE = re.compile(r"^[a-z][a-z0-9_]*$")
# PEP 440 public version, as packaging.version.VERSION_PATTERN without local versions.
PEP440 = re.compile(
    r"^([1-9][0-9]*!)?(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*"
    r"((a|b|rc)(0|[1-9][0-9]*))?(\.post(0|[1-9][0-9]*))?(\.dev(0|[1-9][0-9]*))?$"
)
# https://cloud.google.com/resource-manager/docs/creating-managing-projects
GCP_PROJECT = re.compile(r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$")
# https://cloud.google.com/storage/docs/buckets#naming (no dots: dotted names need
# domain verification). 59 characters leaves room for the "-dev" suffix of dev.
BUCKET = re.compile(r"^[a-z0-9][a-z0-9_-]{1,57}[a-z0-9]$")
REGION = re.compile(r"^[a-z]+(-[a-z]+)+[0-9]+$")
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
REGISTRY = re.compile(r"^[a-z0-9.-]+(:[0-9]+)?(/[a-z0-9._-]+)+$")
REPOSITORY_URL = re.compile(r"^https?://[A-Za-z0-9.-]+(:[0-9]+)?(/[A-Za-z0-9._~-]+)*/?$")
KFP_HOST = re.compile(r"^(https?://[A-Za-z0-9.-]+(:[0-9]+)?(/[A-Za-z0-9._/-]*)?)?$")
SINGLE_LINE = re.compile(r"^[^\n\r\"\\`$]*$")


def _check(value: str, pattern: re.Pattern[str], why: str) -> str | None:
    return None if pattern.fullmatch(value) else why


def validate(answers: dict[str, Any]) -> list[str]:
    """Return one ``ERROR: <answer>: <why>`` line per bad answer (empty when all are good)."""
    errors: list[tuple[str, str]] = []

    def bad(name: str, why: str | None) -> None:
        if why:
            errors.append((name, why))

    project = str(answers.get("project", ""))
    package = str(answers.get("package", ""))
    bad("project", _check(project, SLUG, "use lowercase letters, digits and single hyphens, "
                                         "starting with a letter (e.g. taxi-eta)"))
    if len(project) > 40:
        bad("project", "at most 40 characters (it names pipelines and Kubernetes objects)")
    bad("package", _check(package, PACKAGE, "use lowercase letters, digits and underscores, "
                                            "starting with a letter (e.g. taxi_eta)"))
    if keyword.iskeyword(package) or keyword.issoftkeyword(package):
        bad("package", f"'{package}' is a Python keyword")
    if package in sys.stdlib_module_names:
        bad("package", f"'{package}' shadows the standard library module of that name")
    bad("version", _check(str(answers.get("version", "")), PEP440,
                          "not a PEP 440 version (e.g. 0.1.0, 1.2.0rc1)"))
    bad("gcp_project", _check(str(answers.get("gcp_project", "")), GCP_PROJECT,
                              "6-30 lowercase letters, digits or hyphens, starting with a "
                              "letter and not ending with a hyphen"))
    bucket = str(answers.get("bucket", ""))
    bad("bucket", _check(bucket, BUCKET, "3-59 lowercase letters, digits, '-' or '_', "
                                         "starting and ending with a letter or digit"))
    if bucket.startswith("goog") or "google" in bucket:
        bad("bucket", "may not start with 'goog' or contain 'google'")
    bad("region", _check(str(answers.get("region", "")), REGION,
                         "not a Google Cloud region (e.g. europe-west1)"))
    bad("email", _check(str(answers.get("email", "")), EMAIL, "not an email address"))
    for name in ("author", "description"):
        value = str(answers.get(name, ""))
        if not value.strip():
            bad(name, "may not be empty")
        bad(name, _check(value, SINGLE_LINE, 'one line without \\, ", ` or $'))
    bad("image_registry", _check(str(answers.get("image_registry", "")), REGISTRY,
                                 "not a registry path (e.g. europe-west1-docker.pkg.dev/"
                                 "my-project/my-repo)"))
    bad("kfp_host", _check(str(answers.get("kfp_host", "")), KFP_HOST,
                           "empty, or an http(s) URL such as https://kfp.example.com"))
    bad("repository_url", _check(str(answers.get("repository_url", "")), REPOSITORY_URL,
                                 "an http(s) URL such as https://github.com/my-org/taxi-eta"))
    return [f"ERROR: {name}: {why}" for name, why in errors]


def main(raw_answers: str) -> int:
    errors = validate(json.loads(raw_answers))
    for line in errors:
        print(line, file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(r"""{{ cookiecutter | tojson }}"""))
