"""The MLflow store's upkeep, before any run is written: refuse one MLflow could not use, repair
what an interrupted migration left, point artifacts back under a moved results folder, and start a
new SQLite store as a copy of a migrated empty one (MLflow's own migrations take seconds)."""

from __future__ import annotations

import logging
import os
import sqlite3
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from .errors import UserError

log = logging.getLogger(__name__)

STORE_TAG = "binarena.store"  # on an experiment: the folder its store was in when it was made
TRACKING_PROBE_SECONDS = 10


def sqlite_path(tracking_uri: str) -> Path | None:
    return Path(tracking_uri.removeprefix("sqlite:///")) if tracking_uri.startswith("sqlite:///") else None


def check_tracking_uri(tracking_uri: str) -> None:
    """Refuse, with one line and before anything is written, a store MLflow could not use: an
    unreadable SQLite file, an unreachable server (MLflow itself retries for minutes), a scheme
    MLflow does not take."""
    db = sqlite_path(tracking_uri)
    if db is not None:
        if db.exists():
            _check_sqlite_store(db)
        return
    if tracking_uri.startswith(("http://", "https://")):
        url = tracking_uri.rstrip("/") + "/health"
        try:
            with urllib.request.urlopen(url, timeout=TRACKING_PROBE_SECONDS):
                return
        except urllib.error.HTTPError:
            return  # it answers; what it answers about /health is its business
        except (OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            raise UserError(f"--tracking-uri {tracking_uri}: cannot reach the MLflow server "
                            f"({reason})") from None
    scheme = tracking_uri.split(":", 1)[0] if ":" in tracking_uri else "a path"
    if scheme not in ("databricks", "postgresql", "mysql", "mssql", "sqlite") and \
            not scheme.startswith(("postgresql+", "mysql+", "mssql+")):
        raise UserError(f"--tracking-uri {tracking_uri}: {scheme} is not an MLflow store binarena "
                        "can use (sqlite:///FILE, http(s)://SERVER, or a database URL)")


def _check_sqlite_store(db: Path) -> None:
    try:
        with sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True) as con:
            tables = {row[0] for row in con.execute("SELECT name FROM sqlite_master")}
    except sqlite3.Error as exc:
        raise UserError(f"{db}: not a readable MLflow store ({exc}); move it away to start a "
                        "new one") from None
    if tables and "experiments" not in tables:
        raise UserError(f"{db}: an SQLite file that is not an MLflow store; move it away to "
                        "start a new one")


def _tables(con: sqlite3.Connection) -> set[str]:
    return {row[0] for row in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}


def repair_interrupted_migration(db: Path) -> None:
    """Drop what an interrupted schema migration left behind (``_alembic_tmp_<table>`` beside an
    intact ``<table>``), which otherwise makes every later MLflow start fail."""
    if not db.is_file():
        return
    with sqlite3.connect(db) as con:
        tables = _tables(con)
        for tmp in sorted(t for t in tables if t.startswith("_alembic_tmp_")):
            if tmp.removeprefix("_alembic_tmp_") not in tables:
                raise UserError(f"{db}: an interrupted MLflow migration left {tmp} without its "
                                "table; restore the file from a copy, or move it away")
            log.warning("%s: dropping %s left by an interrupted MLflow migration", db, tmp)
            con.execute(f'DROP TABLE "{tmp}"')


def relocate_artifacts(db: Path, artifact_root: Path) -> int:
    """Point the artifact locations of the store's own experiments under ``artifact_root`` when
    the results folder was moved or copied; the number of experiments changed.

    An experiment is the store's own when its ``binarena.store`` tag names the folder the store
    was in (empty: a driver of another results folder made it here through ``--tracking-uri``;
    binarena < 0.3 set no tag: then when its artifacts were in the ``mlartifacts`` of a folder
    that no longer holds the store)."""
    if not db.is_file():
        return 0
    folder = artifact_root.parent.resolve()
    here = artifact_root.resolve().as_uri()
    changed = 0
    with sqlite3.connect(db) as con:
        if not {"experiments", "experiment_tags", "runs"} <= _tables(con):
            return 0  # MLflow has not made its tables yet
        tags = dict(con.execute("SELECT experiment_id, value FROM experiment_tags WHERE key = ?",
                                (STORE_TAG,)).fetchall())
        for experiment, location in con.execute(
                "SELECT experiment_id, artifact_location FROM experiments").fetchall():
            old = (location or "").rstrip("/")
            if experiment in tags:  # "": made by a driver of another results folder
                ours = bool(tags[experiment]) and \
                    old == (Path(tags[experiment]) / artifact_root.name).as_uri()
            else:
                was = Path(old.removeprefix("file://")).parent
                ours = old.startswith("file://") and old.endswith(f"/{artifact_root.name}") and \
                    (was == folder or not (was / db.name).exists())
            if not ours:
                continue
            con.execute("INSERT OR REPLACE INTO experiment_tags (key, value, experiment_id) "
                        "VALUES (?, ?, ?)", (STORE_TAG, str(folder), experiment))
            if old == here:
                continue
            con.execute("UPDATE experiments SET artifact_location = ? WHERE experiment_id = ?",
                        (here, experiment))
            _replace_prefix(con, "runs", "artifact_uri", experiment, old, here)
            if "logged_models" in _tables(con):
                _replace_prefix(con, "logged_models", "artifact_location", experiment, old, here)
            log.warning("results folder moved or copied: artifacts of experiment %s now resolve "
                        "under %s (were %s)", experiment, here, old)
            changed += 1
    return changed


def _replace_prefix(con: sqlite3.Connection, table: str, column: str, experiment: str,
                    old: str, new: str) -> None:
    """``old/...`` -> ``new/...`` in ``column`` (the ``/`` keeps ``old-2/...`` as it is)."""
    con.execute(f"UPDATE {table} SET {column} = ? || substr({column}, ?) "
                f"WHERE experiment_id = ? AND substr({column}, 1, ?) = ?",
                (new, len(old) + 1, experiment, len(old) + 1, old + "/"))


def cache_folder() -> Path:
    """binarena's cache: ``$XDG_CACHE_HOME/binarena`` (default ``~/.cache/binarena``)."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "binarena"


def seed_new_store(db: Path) -> None:
    """Start a store that does not exist yet as a copy of an empty one, migrated once per MLflow
    version: MLflow creates a store by running every schema migration (~5 s on 2 cores), for each
    new results folder. The copy is what MLflow would create, less the default experiment, which
    MLflow adds when it opens the store, as it does for a new one. Without a usable cache folder
    MLflow creates the store itself."""
    if db.exists():
        return
    import mlflow

    template = cache_folder() / f"mlflow-{mlflow.__version__}-empty.db"
    try:
        if not template.is_file():
            _write_template(template)
        partial = db.with_name(f".{db.name}.partial-{os.getpid()}")
        partial.write_bytes(template.read_bytes())
        try:
            os.link(partial, db)  # never over a store another process made meanwhile
        except FileExistsError:
            pass
        finally:
            partial.unlink()
    except (OSError, sqlite3.Error) as exc:
        log.debug("no store template (%s): MLflow creates %s", exc, db)


def _write_template(template: Path) -> None:
    from mlflow import MlflowClient

    template.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=template.parent) as scratch:
        made = Path(scratch) / "empty.db"
        MlflowClient(f"sqlite:///{made}").search_experiments()  # creates and migrates it
        with sqlite3.connect(made) as con:
            con.execute("DELETE FROM experiment_tags")
            con.execute("DELETE FROM experiments")
        con.close()
        os.replace(made, template)
