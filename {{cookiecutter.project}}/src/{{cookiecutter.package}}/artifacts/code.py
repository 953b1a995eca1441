"""A released version's code, kept like its model: the wheel and its locked requirements.

This is the local analogue of the version's image. Every local run of a version (ad hoc,
scheduled, batch, online) executes this code in an environment built from it, never the
code of the current checkout. Publication has one commit point: the wheel and the lock go
to a content-addressed folder (`code/{version}/{digest}/`), then `code.json` is written
create-only and names them. Two racing publishers cannot mix their files, and the loser
finds the winner's record.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

from {{ cookiecutter.package }}.artifacts.names import ReleaseNames
from {{ cookiecutter.package }}.artifacts.store import AlreadyExistsError, ArtifactStore, StoreError

REQUIREMENTS_FILE = "requirements.lock"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class CodeRecord:
    version: str
    wheel: str  # store key of the wheel
    wheel_sha256: str
    requirements: str  # store key of the locked requirements (name==version per line)
    requirements_sha256: str
    git_tree: str  # the tree the wheel was built from: what "same code" means
    git_sha: str  # the commit it was first built from
    python: str  # major.minor the requirements were resolved for
    created_at: str
    promoted_from: str = ""  # the artifact root it was copied from, if promoted
    # id of the release inputs it was built from (release/inputs.py): what "same code"
    # means since records have it; older records compare git_tree
    release_inputs: str = ""

    def same_code(self, release_inputs: str, git_tree: str) -> bool:
        if self.release_inputs:
            return self.release_inputs == release_inputs
        return self.git_tree == git_tree

    @property
    def digest(self) -> str:
        """Identity of the code: wheel and requirements together."""
        return sha256(f"{self.wheel_sha256}\n{self.requirements_sha256}".encode())

    @property
    def wheel_filename(self) -> str:
        return self.wheel.rsplit("/", 1)[-1]


def read_code(store: ArtifactStore, names: ReleaseNames) -> CodeRecord | None:
    """The committed code record of `names.version`, None when it was never published."""
    if not store.exists(names.code_record_key):
        return None
    try:
        data = json.loads(store.read_text(names.code_record_key))
        # Fields a newer template adds are ignored: every version's code reads this record.
        return CodeRecord(**{k: v for k, v in data.items() if k in CodeRecord.__dataclass_fields__})
    except (ValueError, TypeError, AttributeError) as error:
        raise StoreError(
            f"{names.uri(names.code_record_key)} is not a code record: {error}"
        ) from None


def read_code_files(store: ArtifactStore, record: CodeRecord) -> tuple[bytes, bytes]:
    """The wheel and requirements of `record`, checked against the hashes it recorded."""
    wheel, requirements = store.read(record.wheel), store.read(record.requirements)
    for key, data, expected in (
        (record.wheel, wheel, record.wheel_sha256),
        (record.requirements, requirements, record.requirements_sha256),
    ):
        if sha256(data) != expected:
            raise StoreError(
                f"{store.uri(key)} does not match its recorded sha256 {expected[:12]}: "
                "the released code was altered"
            )
    return wheel, requirements


def verify_code(store: ArtifactStore, names: ReleaseNames) -> None:
    """Raise StoreError when the version's code record, wheel or requirements are missing,
    unreadable or not the bytes recorded."""
    record = read_code(store, names)
    if record is None:
        raise StoreError(f"no code record at {names.uri(names.code_record_key)}")
    read_code_files(store, record)


def _write_content(store: ArtifactStore, key: str, data: bytes) -> None:
    """Create a content-addressed object; an existing one with the same bytes is fine."""
    try:
        store.write(key, data)
    except AlreadyExistsError:
        if store.read(key) != data:
            raise StoreError(f"{store.uri(key)} exists with other content") from None


def commit_code(
    store: ArtifactStore,
    names: ReleaseNames,
    wheel_filename: str,
    wheel: bytes,
    requirements: bytes,
    git_tree: str,
    git_sha: str,
    python: str,
    promoted_from: str = "",
    release_inputs: str = "",
) -> CodeRecord:
    """Publish a version's code; returns the record in force (another run's, if it won)."""
    wheel_sha, requirements_sha = sha256(wheel), sha256(requirements)
    folder_digest = sha256(f"{wheel_sha}\n{requirements_sha}".encode())
    record = CodeRecord(
        version=names.version,
        wheel=names.code_key(folder_digest, wheel_filename),
        wheel_sha256=wheel_sha,
        requirements=names.code_key(folder_digest, REQUIREMENTS_FILE),
        requirements_sha256=requirements_sha,
        git_tree=git_tree,
        git_sha=git_sha,
        python=python,
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        promoted_from=promoted_from,
        release_inputs=release_inputs,
    )
    _write_content(store, record.wheel, wheel)
    _write_content(store, record.requirements, requirements)
    try:
        store.write_text(names.code_record_key, json.dumps(asdict(record), indent=2))
    except AlreadyExistsError:
        winner = read_code(store, names)
        assert winner is not None
        if not winner.same_code(release_inputs, git_tree):
            raise StoreError(
                f"code of {names.version} was already released by another run from other "
                f"files (tree {winner.git_tree[:12]}); bump the version"
            ) from None
        return winner
    return record
