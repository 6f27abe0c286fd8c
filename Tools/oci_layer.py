#!/usr/bin/env python3
"""Writes a folder as one OCI image layer: an uncompressed tar that is the same bytes for the same
input (entries sorted, one fixed time, no user or group names), owned by root except the paths
given with --owner.

    oci_layer.py ROOTFS OUT.tar [--owner PATH=UID:GID ...] [--mtime SECONDS]

Used by Tools/build-image.sh, which hands the tar to `umoci raw add-layer`.
"""
import argparse
import os
import sys
import tarfile


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("rootfs")
    parser.add_argument("out")
    parser.add_argument("--owner", action="append", default=[], metavar="PATH=UID:GID",
                        help="give PATH (absolute, inside the image) to UID:GID")
    parser.add_argument("--mtime", type=int, default=0, help="the time every entry carries")
    args = parser.parse_args()

    owners = {}
    for spec in args.owner:
        path, _, ids = spec.partition("=")
        uid, _, gid = ids.partition(":")
        if not path.startswith("/") or not uid.isdigit() or not gid.isdigit():
            print(f"oci_layer.py: --owner wants /PATH=UID:GID, not {spec!r}", file=sys.stderr)
            return 2
        owners[path.rstrip("/") or "/"] = (int(uid), int(gid))

    entries = []
    for folder, dirs, files in os.walk(args.rootfs):
        dirs.sort()
        for name in dirs + sorted(files):
            entries.append(os.path.join(folder, name))
    entries.sort(key=lambda p: os.path.relpath(p, args.rootfs))

    with tarfile.open(args.out, "w", format=tarfile.PAX_FORMAT) as tar:
        for path in entries:
            relative = os.path.relpath(path, args.rootfs)
            info = tar.gettarinfo(path, arcname=relative)
            info.mtime = args.mtime
            info.uid, info.gid = owners.get("/" + relative, (0, 0))
            info.uname = info.gname = ""
            if info.isreg():
                with open(path, "rb") as data:
                    tar.addfile(info, data)
            else:
                tar.addfile(info)
        unused = set(owners) - {"/" + os.path.relpath(p, args.rootfs) for p in entries}
        if unused:
            print(f"oci_layer.py: --owner names paths not in the folder: {sorted(unused)}", file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
