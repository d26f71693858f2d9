"""URLs for the data sources and the prepared-dataset cache: the one layer between the own-data
readers / the preparation and any filesystem that is not a local path (docs/own-data.md#remote-and-shared-filesystems).

A path with a scheme (``gs://bucket/plays-*.parquet``, ``s3://bucket/prepared``, ``file:///data/x.csv``,
``memory://test/x.csv``) goes through :mod:`pyarrow.fs` (already the readers' dependency):
``FileSystem.from_uri`` knows ``file``, ``s3``, ``gs`` / ``gcs``, ``hdfs`` and ``abfs`` with no extra
package (credentials from the environment, as pyarrow reads them); any other scheme is handed to
`fsspec <https://filesystem-spec.readthedocs.io>`_ when it is installed (``memory://``, ``az://``
with ``adlfs``, ...) through ``pyarrow.fs.PyFileSystem(FSSpecHandler(...))``, so there is one set of
operations for all of them. A plain path (no scheme) never comes here.

The readers need local files (pyarrow's CSV sniffing, TFRecord through TensorFlow, one-line
errors with line numbers), and the prepared arrays are memory-mapped, so a remote file is copied
to a local temporary file while it is read (:func:`local_file`; one file at a time, deleted after),
and a remote cache directory is mirrored locally (:func:`download_dir`, :func:`upload_dir`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import fnmatch
import glob
import hashlib
import re
import shutil
import tempfile
from pathlib import Path, PurePosixPath
from typing import Any, Iterator

from tfrs_lab.data.movielens import DataError

__all__ = ["RemoteFile", "download_dir", "file_sha256", "file_stat", "is_url", "join", "local_file", "local_path",
           "read_text", "remove_dir", "resolve_url", "upload_dir"]

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_CHUNK = 1 << 20  # bytes per read when copying or hashing


def is_url(path: Any) -> bool:
    """Whether ``path`` is a URL (``scheme://...``) rather than a local path."""
    return isinstance(path, (str, RemoteFile)) and bool(_SCHEME.match(str(path)))


def local_path(path: Any) -> Any:
    """A ``file://`` URL as the local path it names (``file:///data/x.csv`` -> ``/data/x.csv``;
    percent-escapes decoded), so local files keep the local path's atomic renames and memory maps;
    anything else unchanged."""
    if isinstance(path, str) and path.lower().startswith("file://"):
        from urllib.parse import unquote, urlparse  # pylint: disable=import-outside-toplevel

        parsed = urlparse(path)
        if parsed.netloc not in ("", "localhost"):
            raise DataError(f"{path}: a file:// URL names a local path (file:///abs/path); use a shared mount for "
                            "another host's files")
        return unquote(parsed.path)
    return path


@dataclasses.dataclass(frozen=True)
class RemoteFile:
    """One file named by a URL (what :func:`~tfrs_lab.data.readers.resolve_paths` returns for a
    URL, where it returns a :class:`~pathlib.Path` for a local path). ``str()`` is the URL."""

    url: str

    def __str__(self) -> str:
        return self.url

    @property
    def name(self) -> str:
        return PurePosixPath(self.url.split("://", 1)[1]).name

    @property
    def suffix(self) -> str:
        return PurePosixPath(self.name).suffix


def join(url: str, *parts: str) -> str:
    """``url`` with path components appended (``join("s3://b/prepared", "x")`` -> ``s3://b/prepared/x``)."""
    return "/".join([url.rstrip("/"), *(p.strip("/") for p in parts)])


def _filesystem(url: str) -> tuple[Any, str]:
    """(pyarrow FileSystem, the path inside it) of ``url``; DataError when no filesystem knows it."""
    import pyarrow as pa  # pylint: disable=import-outside-toplevel
    import pyarrow.fs as pafs  # pylint: disable=import-outside-toplevel

    try:
        return pafs.FileSystem.from_uri(url)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
        arrow_error = " ".join(str(e).split())
    try:
        import fsspec  # pylint: disable=import-outside-toplevel
    except ImportError:
        raise DataError(f"{url}: pyarrow has no filesystem for this URL ({arrow_error}) and fsspec is not installed: "
                        "pip install fsspec plus its package for the scheme, or use a local path") from None
    try:
        fs, path = fsspec.core.url_to_fs(url)
    except (ImportError, ValueError) as e:
        raise DataError(f"{url}: no filesystem for this URL ({' '.join(str(e).split())}): install the fsspec "
                        "package for its scheme (docs/own-data.md#remote-and-shared-filesystems)") from e
    return pafs.PyFileSystem(pafs.FSSpecHandler(fs)), path


def _info(url: str) -> tuple[Any, str, Any]:
    import pyarrow as pa  # pylint: disable=import-outside-toplevel

    fs, path = _filesystem(url)
    try:
        return fs, path, fs.get_file_info(path)
    except (OSError, pa.ArrowException) as e:
        raise DataError(f"{url} could not be read ({' '.join(str(e).split())}): check the URL and the credentials "
                        "of its filesystem") from e


def resolve_url(url: str, where: str) -> list[RemoteFile]:
    """The files ``url`` names (one file, or a glob in its path such as ``gs://b/logs/part-*.parquet``),
    sorted; DataError naming ``where`` when none exists, as for a local path."""
    import pyarrow.fs as pafs  # pylint: disable=import-outside-toplevel

    scheme, rest = url.split("://", 1)
    if not glob.has_magic(rest):
        _, _, info = _info(url)
        if info.type == pafs.FileType.Directory:
            raise DataError(f"{where}: {url} is a directory: name a file, or its shards with a glob such as "
                            f"{url.rstrip('/')}/*.parquet")
        if info.type != pafs.FileType.File:
            raise DataError(f"{where}: {url} does not exist: check the URL")
        return [RemoteFile(url)]
    parts = rest.split("/")
    fixed = next(i for i, p in enumerate(parts) if glob.has_magic(p))
    base = f"{scheme}://{'/'.join(parts[:fixed])}"
    fs, base_path, info = _info(base)
    files = []
    if info.type == pafs.FileType.Directory:
        pattern = parts[fixed:]
        for entry in fs.get_file_info(pafs.FileSelector(base_path, recursive=len(pattern) > 1)):
            relative = entry.path[len(base_path.rstrip("/")) + 1:].split("/")
            if (entry.type == pafs.FileType.File and len(relative) == len(pattern)
                    and all(fnmatch.fnmatchcase(r, p) for r, p in zip(relative, pattern))):
                files.append(RemoteFile(f"{base.rstrip('/')}/{'/'.join(relative)}"))
    if not files:
        raise DataError(f"{where}: no file matches {url}: check the pattern")
    return sorted(files, key=str)


def file_stat(file: Path | RemoteFile) -> tuple[int, int | None] | None:
    """(bytes, modification time in ns or None) of a local or remote file; None when it is gone."""
    import pyarrow.fs as pafs  # pylint: disable=import-outside-toplevel

    if not isinstance(file, RemoteFile):
        try:
            st = Path(file).stat()
        except FileNotFoundError:
            return None
        return st.st_size, st.st_mtime_ns
    _, _, info = _info(file.url)
    if info.type != pafs.FileType.File:
        return None
    return info.size, info.mtime_ns


def file_sha256(file: Path | RemoteFile) -> str:
    """SHA-256 hex of a local or remote file's content, streamed 1 MiB at a time."""
    if not isinstance(file, RemoteFile):
        with Path(file).open("rb") as f:
            return hashlib.file_digest(f, "sha256").hexdigest()
    digest = hashlib.sha256()
    with _open_input(file.url) as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


@contextlib.contextmanager
def _open_input(url: str) -> Iterator[Any]:
    import pyarrow as pa  # pylint: disable=import-outside-toplevel

    fs, path = _filesystem(url)
    try:
        stream = fs.open_input_stream(path)
    except (OSError, pa.ArrowException) as e:
        raise DataError(f"{url} could not be read ({' '.join(str(e).split())}): it may have been removed; check "
                        "the URL") from e
    with stream:
        yield stream


def read_text(url: str) -> str | None:
    """A remote file's text (UTF-8), or None when it does not exist or cannot be read."""
    try:
        with _open_input(url) as f:
            return f.read().decode("utf-8")
    except (DataError, UnicodeDecodeError):
        return None


@contextlib.contextmanager
def local_file(file: Path | RemoteFile) -> Iterator[Path]:
    """``file`` as a local path for the block (reading it): a local path as it is; a remote file
    copied into a temporary directory under its own name (the suffix picks the reader), deleted
    afterwards. A :class:`DataError` raised in the block names the URL instead of the temporary
    copy; a file that disappears (``FileNotFoundError``) or cannot be read (another ``OSError``) in
    the block is one DataError line too."""
    try:
        if not isinstance(file, RemoteFile):
            yield Path(file)
            return
        scratch = Path(tempfile.mkdtemp(prefix="tfrs_lab-fetch-"))
        local = scratch / (file.name or "source")
        try:
            with _open_input(file.url) as src, local.open("wb") as dst:
                while chunk := src.read(_CHUNK):
                    dst.write(chunk)
            try:
                yield local
            except DataError as e:
                raise DataError(str(e).replace(str(local), file.url)) from e
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    except FileNotFoundError as e:
        raise DataError(f"{file} disappeared while it was being read: nothing was written; restore it and try "
                        "again") from e
    except OSError as e:
        raise DataError(f"{file} could not be read ({e.strerror or e}): nothing was written; check it and try "
                        "again") from e


def upload_dir(local: Path, url: str, *, last: str) -> None:
    """Copies the files of the flat directory ``local`` to ``url``/, the file named ``last`` after
    all others (object stores have no atomic rename: a reader that finds ``last`` finds the rest)."""
    import pyarrow.fs as pafs  # pylint: disable=import-outside-toplevel

    fs, path = _filesystem(url)
    fs.create_dir(path, recursive=True)
    local_fs = pafs.LocalFileSystem()
    names = sorted(p.name for p in local.iterdir() if p.is_file())
    for name in [n for n in names if n != last] + [n for n in names if n == last]:
        pafs.copy_files(str(local / name), f"{path.rstrip('/')}/{name}", source_filesystem=local_fs,
                        destination_filesystem=fs)


def download_dir(url: str, local: Path) -> None:
    """Copies the files directly in the remote directory ``url`` into the local directory ``local``."""
    import pyarrow.fs as pafs  # pylint: disable=import-outside-toplevel

    fs, path = _filesystem(url)
    local_fs = pafs.LocalFileSystem()
    for entry in fs.get_file_info(pafs.FileSelector(path)):
        if entry.type == pafs.FileType.File:
            pafs.copy_files(entry.path, str(local / entry.base_name), source_filesystem=fs,
                            destination_filesystem=local_fs)


def remove_dir(url: str) -> None:
    """Deletes the remote directory ``url`` and its content when it exists (best effort)."""
    import pyarrow as pa  # pylint: disable=import-outside-toplevel

    fs, path = _filesystem(url)
    with contextlib.suppress(OSError, pa.ArrowException):
        fs.delete_dir(path)
