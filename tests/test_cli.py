"""The `nextbest` command, run as a child process the way an operator runs it."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from conftest import STANDARD_AFFINITY, STANDARD_CONTACTS, STANDARD_PROFILES, write_extract

from nextbest.keys import authenticate
from nextbest.settings import Settings
from nextbest.storage.db import Database


def _run(database: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {key: value for key, value in os.environ.items() if not key.startswith("NEXTBEST_")}
    environ["NEXTBEST_DATABASE_URL"] = f"sqlite:///{database}"
    environ.update(env)
    return subprocess.run(
        [sys.executable, "-m", "nextbest.cli", *args],
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
def database(tmp_path: Path) -> Path:
    return tmp_path / "cli.db"


def test_keys_create_prints_one_key_that_authenticates(database: Path) -> None:
    created = _run(database, "keys", "create", "--role", "clerk", "--user", "u1", "--store", "S1")
    assert created.returncode == 0, created.stderr
    lines = created.stdout.splitlines()
    assert len(lines) == 1
    key = lines[0].strip()
    assert key.startswith("nb_clerk_")

    db = Database(Settings(database_url=f"sqlite:///{database}"))
    try:
        actor = authenticate(db, key, datetime.now(UTC))
        assert actor is not None
        assert (actor.user_id, actor.role, actor.store_id) == ("u1", "clerk", "S1")
        assert authenticate(db, key + "x", datetime.now(UTC)) is None
    finally:
        db.dispose()

    listed = _run(database, "keys", "list")
    assert listed.returncode == 0, listed.stderr
    assert key not in listed.stdout
    assert key[len("nb_clerk_") + 4 :] not in listed.stdout  # no part of the secret either
    (row,) = listed.stdout.splitlines()
    assert row.split("\t")[2:5] == ["clerk", "u1", "S1"]


def test_keys_create_refuses_an_unknown_role(database: Path) -> None:
    refused = _run(database, "keys", "create", "--role", "boss", "--user", "u1")
    assert refused.returncode == 2
    assert refused.stdout == ""
    assert "--role" in refused.stderr
    assert "boss" in refused.stderr


def test_keys_create_refuses_an_overlong_user(database: Path) -> None:
    refused = _run(database, "keys", "create", "--role", "agent", "--user", "u" * 65)
    assert refused.returncode == 2
    assert refused.stdout == ""
    assert "user" in refused.stderr


def test_load_prints_counts(database: Path, standard_extract: Path) -> None:
    loaded = _run(database, "load", str(standard_extract))
    assert loaded.returncode == 0, loaded.stderr
    assert "4 profiles, 6 affinities, 1 contacts" in loaded.stdout
    assert "loaded data version 1 (catalog test-1)" in loaded.stdout


def test_load_of_a_malformed_extract_names_file_line_and_column(
    database: Path, tmp_path: Path
) -> None:
    profiles = copy.deepcopy(STANDARD_PROFILES)
    profiles[1][5] = "forty"
    profiles[3][1] = "rich_kid"
    extract = write_extract(tmp_path / "bad", profiles, STANDARD_AFFINITY, STANDARD_CONTACTS)

    refused = _run(database, "load", str(extract))

    assert refused.returncode == 2
    assert refused.stdout == ""
    problems = [line for line in refused.stderr.splitlines() if line.startswith("profiles.csv:")]
    assert problems == [
        "profiles.csv:3: column arpu: expected a number, got 'forty'",
        "profiles.csv:5: column segment: unknown segment 'rich_kid' (not in the catalog)",
    ]
    assert "refused" in refused.stderr


def test_bad_port_names_the_variable(database: Path) -> None:
    for value, reason in (("eighty", "expected an integer"), ("70000", "expected 1-65535")):
        refused = _run(database, "keys", "list", NEXTBEST_PORT=value)
        assert refused.returncode == 2
        assert "NEXTBEST_PORT" in refused.stderr
        assert reason in refused.stderr
        assert "Traceback" not in refused.stderr


def test_no_command_prints_help_and_exits_2(database: Path) -> None:
    bare = _run(database)
    assert bare.returncode == 2
    assert "usage: nextbest" in bare.stdout
