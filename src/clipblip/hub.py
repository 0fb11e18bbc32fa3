"""Turn a catalog entry into files on disk: the local Hugging Face cache first, then a download when online.

The cache lookup is plain pathlib over the layout huggingface_hub writes
(`<cache>/models--<org>--<name>/refs/main` holds a commit; `snapshots/<commit>/<file>`), so cached weights load
with huggingface_hub not installed and never touch the network. Entries with no Hub repo (Salesforce's original
BLIP .pth files) are fetched from their `url` into clipblip's own cache.

Every download is checked against the publisher's sha256 where there is one (the catalog's `sha256` for a URL; for
a Hub file stored in LFS, the name of its blob, which is its sha256: huggingface_hub itself checks only the size),
and the sha256 of what was kept is recorded (`recorded_sha256`), so a later load can say exactly what it loaded.
"""

import hashlib
import os
import re
import urllib.request
from pathlib import Path

from .catalog import Entry
from .errors import ClipBlipError
from .files import atomic_write, write_atomic

_TRUE = {"1", "ON", "YES", "TRUE"}  # the values huggingface_hub accepts for its boolean environment variables
_SHA256 = re.compile(r"[0-9a-f]{64}")


def hf_cache_dir() -> Path:
    """Where huggingface_hub keeps downloaded repos, by the same environment variables it reads."""
    hub_cache = os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE")
    if hub_cache:
        return Path(os.path.expandvars(hub_cache)).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME") or "~/.cache"
    hf_home = os.environ.get("HF_HOME") or os.path.join(xdg, "huggingface")
    return Path(os.path.expandvars(hf_home)).expanduser() / "hub"


def url_cache_dir() -> Path:
    """Where clipblip keeps files it downloads from a plain URL: $CLIPBLIP_CACHE or ~/.cache/clipblip."""
    root = os.environ.get("CLIPBLIP_CACHE") or os.path.join(os.environ.get("XDG_CACHE_HOME") or "~/.cache",
                                                            "clipblip")
    return Path(os.path.expandvars(root)).expanduser()


def is_offline() -> bool:
    """True when HF_HUB_OFFLINE or TRANSFORMERS_OFFLINE says so; read at call time, not at import."""
    return any(os.environ.get(var, "").upper() in _TRUE for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def resolve(entry: Entry, *, cache_dir=None, offline: bool | None = None) -> Path:
    """The directory holding all of `entry.files` (Hub entries), or the downloaded file (URL-only entries).

    `cache_dir` replaces the Hugging Face cache (or, for URL-only entries, clipblip's URL cache);
    `offline=None` follows HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE. Offline and not cached fails at once.
    """
    offline = is_offline() if offline is None else offline
    if entry.hub_id is None:
        return _resolve_url(entry, Path(cache_dir) if cache_dir else url_cache_dir(), offline)
    root = Path(cache_dir) if cache_dir else hf_cache_dir()
    found = cached_snapshot(root, entry.hub_id, entry.files)
    if found is not None:
        return found
    if offline:
        raise ClipBlipError(f"{entry.name}: {_missing(entry)} are not in the Hugging Face cache at {root}, and "
                            f"downloads are off (offline=True, or HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE set). "
                            f"{_local_advice(entry)}")
    return _download_hub(entry, root)


def is_cached(entry: Entry) -> bool:
    """Whether `resolve` would find the entry's files locally, without a download."""
    if entry.hub_id is None:
        return (url_cache_dir() / entry.files[0]).is_file()
    return cached_snapshot(hf_cache_dir(), entry.hub_id, entry.files) is not None


def cached_snapshot(root: Path, hub_id: str, files) -> Path | None:
    """The snapshot directory of `hub_id` under `root` that holds every one of `files`, or None."""
    repo = Path(root) / f"models--{hub_id.replace('/', '--')}"
    snapshots = repo / "snapshots"
    ref = repo / "refs" / "main"
    if ref.is_file():
        snapshot = snapshots / ref.read_text().strip()
        if _holds(snapshot, files):
            return snapshot
    if not snapshots.is_dir():
        return None
    # No usable refs/main (copied caches often lack refs): take the newest snapshot that is complete.
    candidates = sorted((p for p in snapshots.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime,
                        reverse=True)
    return next((p for p in candidates if _holds(p, files)), None)


def _holds(snapshot: Path, files) -> bool:
    # is_file() follows the symlinks into blobs/, so a link left by an interrupted download does not count.
    return all((snapshot / name).is_file() for name in files)


def _download_hub(entry: Entry, root: Path) -> Path:
    try:
        from huggingface_hub import hf_hub_download
    except ImportError:
        raise ClipBlipError(f"{entry.name}: {_missing(entry)} are not cached and downloading them needs "
                            f"huggingface_hub: pip install 'clipblip[hub]'. {_local_advice(entry)}") from None
    paths = []
    for name in entry.files:
        try:
            # cache_dir is always passed: huggingface_hub reads HF_HUB_CACHE once, at its own import.
            path = Path(hf_hub_download(repo_id=entry.hub_id, filename=name, cache_dir=str(root)))
        except Exception as err:  # network, HTTP and repo errors have no common base across huggingface_hub versions
            raise ClipBlipError(f"{entry.name}: could not download {name!r} from {entry.hub_id!r} "
                                f"({type(err).__name__}: {_first_line(err)}). {_local_advice(entry)}") from err
        _check_blob(path, entry)
        paths.append(path)
    snapshot = _snapshot_of(paths[0], entry.files[0])
    if not _holds(snapshot, entry.files):
        raise ClipBlipError(f"{entry.name}: the files of {entry.hub_id!r} landed in different snapshots (the repo "
                            "changed during the download); run it again.")
    return snapshot


def _snapshot_of(path: Path, filename: str) -> Path:
    # A filename may carry a sub-folder ("text/config.json"); climb one level per part.
    for _ in Path(filename).parts:
        path = path.parent
    return path


def _resolve_url(entry: Entry, root: Path, offline: bool) -> Path:
    target = root / entry.files[0]
    if target.is_file():
        return target
    if offline:
        raise ClipBlipError(f"{entry.name}: {target} is not there and downloads are off (offline); fetch "
                            f"{entry.url} yourself. {_local_advice(entry)}")
    return _download_url(entry, target)


def _download_url(entry: Entry, target: Path) -> Path:
    from tqdm import tqdm

    digest = hashlib.sha256()
    # only a complete, checked file ever gets the real name: an error below leaves no file behind
    with atomic_write(target, "wb") as out:
        try:
            with urllib.request.urlopen(entry.url, timeout=60) as response:
                total = int(response.headers.get("Content-Length") or 0) or None
                with tqdm(total=total, unit="B", unit_scale=True, desc=entry.files[0]) as bar:
                    while chunk := response.read(1 << 20):
                        out.write(chunk)
                        digest.update(chunk)
                        bar.update(len(chunk))
        except OSError as err:  # URLError, HTTPError, timeouts and disk errors are all OSError
            raise ClipBlipError(f"{entry.name}: could not download {entry.url} ({_first_line(err)}). "
                                f"{_local_advice(entry)}") from err
        # Checked once, at download; hashing a multi-GB file on every load would cost seconds each time.
        if entry.sha256 and digest.hexdigest() != entry.sha256:
            raise ClipBlipError(f"{entry.name}: the file from {entry.url} has sha256 {digest.hexdigest()}, "
                                f"expected {entry.sha256}; it was not kept. Try again, or fetch it yourself.")
        # the record goes first: a run killed between the two leaves a record without a file, never the reverse
        write_atomic(_record_of(target), f"{digest.hexdigest()}  {target.name}\n")
    return target


def _record_of(path: Path) -> Path:
    """Where the sha256 of a downloaded file is kept: beside it, in `sha256sum -c` format."""
    return path.with_name(path.name + ".sha256")


def recorded_sha256(path) -> str | None:
    """The sha256 of a file as downloaded: its record (URL downloads) or its Hub blob's name (LFS files); None
    where clipblip did not download it or the Hub keeps it in git (small files such as config.json)."""
    path = Path(path)
    record = _record_of(path)
    if record.is_file():
        found = record.read_text(encoding="utf-8", errors="replace")[:64]
        return found if _SHA256.fullmatch(found) else None
    blob = path.resolve().name
    return blob if path.is_symlink() and _SHA256.fullmatch(blob) else None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _check_blob(path: Path, entry: Entry) -> None:
    """A Hub file in LFS lives in blobs/<its sha256>: a download whose content has another hash is removed."""
    blob = path.resolve()
    if not (path.is_symlink() and _SHA256.fullmatch(blob.name)):
        return  # a git-stored file (its blob is named by a git sha1), or a cache without symlinks: nothing to check
    actual = _sha256(blob)
    if actual != blob.name:
        blob.unlink(missing_ok=True)
        path.unlink(missing_ok=True)
        raise ClipBlipError(f"{entry.name}: {path.name} from {entry.hub_id!r} has sha256 {actual}, expected "
                            f"{blob.name} (the Hub's); it was not kept. Try again, or fetch it yourself.")


def _missing(entry: Entry) -> str:
    return f"{', '.join(entry.files)} of {entry.hub_id!r}"


def _local_advice(entry: Entry) -> str:
    return (f"To use a copy you already have, pass its path: clipblip.load('/path/to/{entry.files[0]}', "
            f"arch='{entry.arch}'), or the directory holding {', '.join(entry.files)}.")


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else "no message"
