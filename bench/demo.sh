#!/usr/bin/env bash
# Generate a project into a scratch folder and run its main job: a full local release,
# then one batch-inference run, the versions table and who serves which user clusters.
# Prints where the project is.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
venv_bin="$here/${VENV:-.venv}/bin"
scratch=$(mktemp -d "${TMPDIR:-/tmp}/ml-release-demo.XXXXXX")
export GIT_AUTHOR_NAME="${GIT_AUTHOR_NAME:-Demo}" GIT_AUTHOR_EMAIL="${GIT_AUTHOR_EMAIL:-demo@example.com}"
export GIT_COMMITTER_NAME="$GIT_AUTHOR_NAME" GIT_COMMITTER_EMAIL="$GIT_AUTHOR_EMAIL"

"$venv_bin/cookiecutter" --no-input "$here" -o "$scratch"
cd "$scratch/taxi-eta"
"$venv_bin/uv" sync --locked --quiet   # the lock the hook committed
test -z "$(git status --porcelain)"   # generated, locked and installed: nothing to commit
# The image needs a base image from Docker Hub: set DEMO_BUILDER=auto (or docker, podman,
# buildah) where one is reachable; by default the demo releases everything but the image.
IMAGE_BUILDER="${DEMO_BUILDER:-none}" .venv/bin/inv release
.venv/bin/inv run-inference
.venv/bin/inv versions
.venv/bin/inv traffic
.venv/bin/inv workers --stop   # the demo leaves nothing running (its workers would idle 5 min)
echo "demo project: $scratch/taxi-eta"
