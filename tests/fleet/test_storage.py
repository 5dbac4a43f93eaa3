"""Database schema (Alembic vs the models, on SQLite and PostgreSQL) and the file store."""

from __future__ import annotations

import ast
import hashlib
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from pydantic import ValidationError
from sqlalchemy import inspect

from fleet.config import FleetConfig, StorageConfig
from fleet.db import current_revision, head_revision, make_engine, migrate
from fleet.errors import ChecksumMismatch
from fleet.models import Base
from fleet.storage import FileStore, TooLarge, open_storage
from tests.durability import record_fsyncs


def test_migrations_build_exactly_the_models(db_url: str) -> None:
    """Migrating an empty database twice is harmless, and leaves no difference between the
    schema and the ORM models (a model changed without a migration fails here)."""
    engine = make_engine(db_url)
    try:
        migrate(engine)
        migrate(engine)
        assert current_revision(engine) == head_revision() is not None
        assert {"devices", "events", "telemetry", "pages", "files"} <= set(inspect(engine).get_table_names())
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": False}), Base.metadata)
        assert diff == []
    finally:
        engine.dispose()


def test_file_store_verifies_and_leaves_nothing_behind(tmp_path: Path) -> None:
    """Bad input tried: content whose sha256 is not the announced one, content over the size
    limit, a malformed sha256. Nothing (not even a temporary file) is left by any of them."""
    store = FileStore(tmp_path)
    data = b"page bytes" * 1000
    sha = hashlib.sha256(data).hexdigest()
    assert store.put_bytes(sha, data) is True
    assert store.put_bytes(sha, data) is False
    assert store.path(sha).read_bytes() == data
    assert store.path(sha).relative_to(tmp_path).parts[:2] == (sha[:2], sha[2:4])

    other = hashlib.sha256(b"other").hexdigest()
    with pytest.raises(ChecksumMismatch):
        store.put_bytes(other, data)
    assert not store.has(other)
    with store.begin(other, max_size=10) as pending, pytest.raises(TooLarge):
        pending.write(b"x" * 11)
    with pytest.raises(ValueError, match="sha256"):
        store.path("../../etc/passwd")
    assert list((tmp_path / "tmp").iterdir()) == []
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == [store.path(sha)]


def test_a_stored_file_survives_a_power_cut_with_its_new_folders(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The first file under aa/bb/ creates both folders: before the store says 'stored' (and the
    device deletes its copy), the file, its folder entry and both new folders' entries are fsynced."""
    store = FileStore(tmp_path)
    synced = record_fsyncs(monkeypatch)
    data = b"first page"
    sha = hashlib.sha256(data).hexdigest()
    assert store.put_bytes(sha, data)
    final = store.path(sha)
    assert any(p.parent == tmp_path / "tmp" for p in synced), "the content itself was not fsynced"
    assert {final.parent, final.parent.parent, tmp_path} <= set(synced)


def test_every_node_reaches_the_files_through_the_one_storage(tmp_path: Path) -> None:
    """Two nodes whose configs name the same storage (one directory on a mount both reach) see
    one set of files: what one stores the other holds and reads, what one deletes is gone for
    both. Bad input: a storage type the fleet does not have is refused by the config, naming it."""
    shared = tmp_path / "mount" / "files"
    node_a = open_storage(StorageConfig(dir=shared, fsync=False))
    node_b = open_storage(StorageConfig(dir=shared, fsync=False))
    data = b"%PDF-1.7 page"
    sha = hashlib.sha256(data).hexdigest()
    with node_a.begin(sha) as pending:
        pending.write(data)
        assert pending.commit()
    assert node_b.has(sha) and node_b.path(sha).read_bytes() == data
    assert not node_b.put_bytes(sha, data), "the second node stored a file the first already holds"
    node_b.delete(sha)
    assert not node_a.has(sha) and not node_b.has(sha)
    node_b.delete(sha)  # deleting what is gone is harmless
    with pytest.raises(ValidationError, match="storage"):
        FleetConfig.model_validate({"storage": {"type": "s3", "dir": str(shared)}})


def test_no_part_of_the_fleet_opens_files_around_the_interface() -> None:
    """Every fleet module that needs the files gets them from ``open_storage`` (the config's
    choice), so every node and every job use the same storage: no module but ``fleet.storage``
    builds a ``FileStore`` itself."""
    root = Path(__file__).resolve().parents[2] / "fleet"
    builders = []
    for module in root.rglob("*.py"):
        if module.name == "storage.py" and module.parent == root:
            continue
        text = module.read_text()
        if "FileStore" not in text:
            continue
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "FileStore":
                builders.append(f"{module.relative_to(root.parent)}:{node.lineno}")
    assert not builders, builders
    assert "open_storage(config.storage)" in (root / "api" / "app.py").read_text()
