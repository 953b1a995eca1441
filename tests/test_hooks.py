"""The hooks' functions, imported and called directly (as cookiecutter-django tests them)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import TEMPLATE


def load(name: str):
    spec = importlib.util.spec_from_file_location(name, TEMPLATE / "hooks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


pre = load("pre_gen_project")
post = load("post_gen_project")

GOOD = {
    "project": "taxi-eta", "package": "taxi_eta", "version": "0.1.0",
    "gcp_project": "taxi-eta-ml", "bucket": "taxi-eta-ml-artifacts", "region": "europe-west1",
    "email": "a@b.io", "author": "Ann O'Neil", "description": "ETA model.",
    "image_registry": "europe-west1-docker.pkg.dev/taxi-eta-ml/taxi-eta", "kfp_host": "",
    "repository_url": "https://github.com/my-org/taxi-eta",
}


def test_good_answers_pass() -> None:
    assert pre.validate(GOOD) == []


@pytest.mark.parametrize("field,value,why", [
    ("project", "Taxi ETA", "lowercase letters"),
    ("project", "../evil", "lowercase letters"),
    ("project", "a/b", "lowercase letters"),
    ("project", "", "lowercase letters"),
    ("project", "taxi--eta", "single hyphens"),
    ("project", "x" * 41, "at most 40"),
    ("package", "class", "keyword"),
    ("package", "match", "keyword"),
    ("package", "json", "standard library"),
    ("package", "taxi-eta", "underscores"),
    ("package", "1taxi", "starting with a letter"),
    ("version", "v1.0", "PEP 440"),
    ("version", "1.0.0+local", "PEP 440"),
    ("version", "banana", "PEP 440"),
    ("gcp_project", "abc", "6-30"),
    ("gcp_project", "Taxi-Project", "6-30"),
    ("gcp_project", "taxi-project-", "6-30"),
    ("bucket", "My_Bucket", "lowercase"),
    ("bucket", "ab", "3-59"),
    ("bucket", "google-data", "google"),
    ("bucket", "goog-data", "goog"),
    ("bucket", "a.b.c", "lowercase"),
    ("region", "mars", "region"),
    ("email", "not-an-email", "email"),
    ("author", "", "empty"),
    ("author", 'Bob"; import os', "one line"),
    ("description", "line\nbreak", "one line"),
    ("description", "$(rm -rf ~)", "one line"),
    ("image_registry", "https://registry", "registry path"),
    ("kfp_host", "kfp.local", "http(s) URL"),
    ("repository_url", "", "http(s) URL"),
    ("repository_url", "github.com/my-org/taxi-eta", "http(s) URL"),
    ("repository_url", 'https://x.io/"; rm', "http(s) URL"),
])
def test_bad_answers_are_refused_with_one_error_line(field: str, value: str, why: str) -> None:
    errors = pre.validate({**GOOD, field: value})
    assert errors, f"{field}={value!r} was accepted"
    assert all(line.startswith("ERROR: ") for line in errors)
    assert any(line.startswith(f"ERROR: {field}: ") and why in line for line in errors), errors


def test_main_prints_errors_and_exits_1(capsys) -> None:
    assert pre.main(json.dumps({**GOOD, "version": "nope"})) == 1
    assert capsys.readouterr().err.strip() == (
        "ERROR: version: not a PEP 440 version (e.g. 0.1.0, 1.2.0rc1)")
    assert pre.main(json.dumps(GOOD)) == 0


@pytest.mark.parametrize("license_,ci,removed", [
    ("MIT", "github-actions", []),
    ("Proprietary", "github-actions", ["LICENSE"]),
    ("Apache-2.0", "none", [".github"]),
    ("Proprietary", "none", ["LICENSE", ".github"]),
])
def test_files_of_options_not_chosen_are_removed(tmp_path: Path, license_: str, ci: str,
                                                 removed: list[str]) -> None:
    (tmp_path / "LICENSE").write_text("license")
    (tmp_path / ".github" / "workflows").mkdir(parents=True)
    answers = {"license": license_, "ci": ci}
    assert post.files_to_remove(answers) == removed
    post.prune(tmp_path, answers)
    for name in ("LICENSE", ".github"):
        assert (tmp_path / name).exists() == (name not in removed)


def test_init_git_makes_one_commit_on_main(tmp_path: Path) -> None:
    (tmp_path / "README.md").write_text("hi")
    assert post.init_git(tmp_path, "Ann O'Neil", "ann@example.com")

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=tmp_path, capture_output=True, text=True,
                              check=True).stdout.strip()

    assert git("branch", "--show-current") == "main"
    assert git("log", "--format=%an <%ae>") == "Ann O'Neil <ann@example.com>"
    assert git("status", "--porcelain") == ""


def test_hooks_never_execute_answer_text(tmp_path: Path) -> None:
    """An answer that is Python code stays data: the hook parses it as JSON."""
    marker = tmp_path / "pwned"
    hostile = f"x''' + __import__('pathlib').Path({str(marker)!r}).touch() + '''"
    source = (TEMPLATE / "hooks" / "pre_gen_project.py").read_text()

    # What cookiecutter renders: the tojson text of the answers inside the raw string.
    rendered_json = json.dumps({**GOOD, "author": hostile}).replace("'", "\\u0027")
    script = tmp_path / "hook.py"
    script.write_text(source.replace("{{ cookiecutter | tojson }}", rendered_json))
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr  # quotes and parentheses are a valid name
    assert not marker.exists()


def test_under_cruft_the_hook_leaves_git_to_the_user(tmp_path: Path, capsys) -> None:
    """cruft re-renders the template for every update; a .git there breaks its diff."""
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\nversion = "0.1.0"\n'
                                             'requires-python = ">=3.11"\n')
    answers = {**GOOD, "license": "MIT", "ci": "none", "_commit": "0" * 40}
    assert post.main(json.dumps(answers), tmp_path) == 0
    assert not (tmp_path / ".git").exists()
    assert not (tmp_path / ".cruft.json").exists()  # cruft writes its own after the hook
    assert (tmp_path / "uv.lock").is_file()
    assert "git init -b main && git add -A" in capsys.readouterr().out


def test_a_template_that_is_not_a_git_checkout_is_not_recorded(tmp_path: Path) -> None:
    copy = tmp_path / "template-copy"
    copy.mkdir()
    (copy / "cookiecutter.json").write_text("{}")
    answers = {**GOOD, "_template": str(copy), "_repo_dir": str(copy)}
    assert post.template_record(answers) is None
    project = tmp_path / "project"
    project.mkdir()
    assert not post.write_template_record(project, answers)
    assert not (project / ".cruft.json").exists()


def test_abbreviated_templates_are_recorded_as_clonable_urls(tmp_path: Path) -> None:
    assert post.template_url("gh:acme/ml-template", tmp_path) == (
        "https://github.com/acme/ml-template.git")
    assert post.template_url("https://git.example.com/t.git", tmp_path) == (
        "https://git.example.com/t.git")
    assert post.template_url("../t", tmp_path) == str(tmp_path.resolve())


def test_without_uv_the_hook_warns_and_goes_on(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.setattr(post.sys, "executable", str(tmp_path / "python"))
    assert not post.lock(tmp_path, "taxi-eta")
    warning = capsys.readouterr().err.strip()
    assert warning == post.NO_UV and "`pip install uv`" in warning and "`uv lock`" in warning
