"""Walk a folder tree and hash every block of every file, on the source server itself.

This file is shipped as it is to a source reached over SSH and run there by ``python3 -``
(its text on standard input, followed by one ``main(...)`` line): computing the block
hashes where the data lives is what keeps unchanged blocks off the network; only 64 hex
characters per block cross it. It therefore uses the standard library only and stays
valid for Python 3.5 (``os.scandir``; no f-strings), which is all a source needs.

Output: JSON lines on standard output, in this order:

* ``{"root": path, "ok": bool, "python": version}`` (``ok`` false: not a directory);
* ``{"total_bytes": n, "entries": n}`` after a stat-only walk (progress needs a total);
  with ``"hash": false`` in the parameters the output ends here (sizes only);
* one line per entry, parents before children, names sorted per directory:
  ``{"rel", "type": "dir"|"file"|"symlink", "mode", "size", "mtime_ns"}`` plus
  ``"link"`` for a symlink, and for a file ``"blocks"`` (SHA-256 per block) and
  ``"unstable": true`` when its size or mtime changed while it was hashed; a file that
  vanished is left out; one that cannot be read has ``"error"``;
* ``{"end": true, "entries": n}`` last: a stream without it was cut short.

The tree is walked exactly like ``manifest.walk_tree`` walks a local one (the metadata
folder at the top is skipped), so both give the same relative paths in the same order.
"""

import hashlib
import json
import os
import stat
import sys

META_DIR = ".migrationbox"


def _emit(record):
    sys.stdout.write(json.dumps(record, separators=(",", ":")) + "\n")


def walk(root):
    """(rel, lstat) of every entry under ``root``, parents first, sorted per directory."""
    out = []

    def _walk(rel_dir):
        abs_dir = os.path.join(root, rel_dir) if rel_dir else root
        try:
            names = sorted(os.listdir(abs_dir))
        except (FileNotFoundError, NotADirectoryError):
            return
        for name in names:
            if not rel_dir and name == META_DIR:
                continue
            rel = rel_dir + "/" + name if rel_dir else name
            try:
                st = os.lstat(os.path.join(root, rel))
            except FileNotFoundError:
                continue
            out.append((rel, st))
            if stat.S_ISDIR(st.st_mode):
                _walk(rel)

    _walk("")
    return out


def hash_blocks(path, block_size):
    """(size, mtime_ns, [sha256 per block], unstable) of the file at ``path``."""
    with open(path, "rb") as fh:
        before = os.fstat(fh.fileno())
        hashes = []
        size = 0
        while True:
            data = fh.read(block_size)
            if not data:
                break
            size += len(data)
            hashes.append(hashlib.sha256(data).hexdigest())
        after = os.fstat(fh.fileno())
    unstable = (before.st_size != after.st_size or before.st_mtime_ns != after.st_mtime_ns
                or size != after.st_size)
    return size, after.st_mtime_ns, hashes, unstable


def main(params):
    root = params["root"]
    block_size = int(params["block_size"])
    ok = os.path.isdir(root)
    _emit({"root": root, "ok": ok, "python": sys.version.split()[0]})
    if not ok:
        _emit({"end": True, "entries": 0})
        return
    entries = walk(root)
    _emit({"total_bytes": sum(st.st_size for _, st in entries if stat.S_ISREG(st.st_mode)),
           "entries": len(entries)})
    if not params.get("hash", True):  # sizes only (a dry run's estimate)
        _emit({"end": True, "entries": 0})
        return
    count = 0
    for rel, st in entries:
        path = os.path.join(root, rel)
        rec = {"rel": rel, "mode": stat.S_IMODE(st.st_mode), "size": st.st_size,
               "mtime_ns": st.st_mtime_ns}
        if stat.S_ISDIR(st.st_mode):
            rec["type"] = "dir"
        elif stat.S_ISLNK(st.st_mode):
            rec["type"] = "symlink"
            try:
                rec["link"] = os.readlink(path)
            except FileNotFoundError:
                continue
        elif stat.S_ISREG(st.st_mode):
            rec["type"] = "file"
            try:
                size, mtime_ns, hashes, unstable = hash_blocks(path, block_size)
            except FileNotFoundError:
                continue
            except OSError as exc:
                # format(), not an f-string: this file must run on a Python 3.5 source
                rec["error"] = "{}: {}".format(type(exc).__name__, exc.strerror or exc)  # noqa: UP032
            else:
                rec.update(size=size, mtime_ns=mtime_ns, blocks=hashes)
                if unstable:
                    rec["unstable"] = True
        else:
            continue  # sockets, fifos, devices: not data to replicate
        _emit(rec)
        count += 1
        sys.stdout.flush()
    _emit({"end": True, "entries": count})
    sys.stdout.flush()
