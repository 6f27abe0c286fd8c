#!/usr/bin/env bash
# Assembles the licensed container image as an OCI layout, without a Docker engine: a root
# filesystem with the binary and what `ldd` says it needs, one layer, and the same user,
# entrypoint, environment, ports and volume as the Dockerfile. Needs Debian's umoci and skopeo.
#
#   Tools/build-image.sh [--binary PATH] [--out DIR] [--tag TAG] [--archive FILE]
#
#   --binary PATH   put this licensed in the image (default: a release build made here with
#                   --static-swift-stdlib, as the Dockerfile makes it)
#   --out DIR       the OCI layout to write (default .build-image/oci; replaced if it exists)
#   --tag TAG       the image's tag (default: licensed's version)
#   --archive FILE  also write a docker-archive tar (`docker load -i FILE`, or push it with
#                   `skopeo copy docker-archive:FILE docker://REGISTRY/coditect/licensed:TAG`)
#
# Push the layout itself with `skopeo copy oci:DIR:TAG docker://REGISTRY/coditect/licensed:TAG`.
# Prints the image's size: its compressed layer (what a registry stores and a node pulls) and
# the unpacked root filesystem.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { echo "build-image: $*" >&2; }
binary="" out=".build-image/oci" tag="" archive=""
while (($#)); do
  case "$1" in
    --binary) binary="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --tag) tag="$2"; shift 2 ;;
    --archive) archive="$2"; shift 2 ;;
    *) say "unknown argument $1 (see the top of $0)"; exit 2 ;;
  esac
done
for tool in umoci skopeo python3 ldd strip; do
  command -v "$tool" >/dev/null || { say "missing $tool (Debian: apt-get install umoci skopeo)"; exit 1; }
done

if [ -z "$binary" ]; then
  say "building licensed (release, --static-swift-stdlib)"
  swift build -c release --product licensed --static-swift-stdlib --scratch-path .build-image/swift >&2
  binary="$(swift build -c release --static-swift-stdlib --scratch-path .build-image/swift --show-bin-path)/licensed"
fi
[ -x "$binary" ] || { say "$binary is not an executable"; exit 1; }
version="$("$binary" --version)"
tag="${tag:-$version}"

stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
rootfs="$stage/rootfs"
mkdir -p "$rootfs"/{usr/local/bin,usr/libexec/swift,etc/ssl/certs,var/lib/licensed,tmp,proc,dev,sys}
install -m 0755 "$binary" "$rootfs/usr/local/bin/licensed"
# Without the DWARF debug information (a third of the binary); the symbol table stays, so crash
# backtraces still name functions.
strip --strip-debug "$rootfs/usr/local/bin/licensed"

# The shared libraries the binary loads, each at the path the loader finds it (its folder is on
# the binary's RUNPATH or the loader's default path), and the loader itself.
ldd "$binary" | while read -r first arrow resolved _; do
  if [ "$arrow" = "=>" ]; then library="$resolved"; else library="$first"; fi
  case "$library" in /*) ;; *) continue ;; esac   # linux-vdso.so.1 is the kernel's
  mkdir -p "$rootfs$(dirname "$library")"
  cp -L "$library" "$rootfs$library"
done

# Crash reports: Swift's backtracer, named by SWIFT_BACKTRACE below.
backtracer="$(dirname "$(dirname "$(command -v swift)")")/libexec/swift/linux/swift-backtrace-static"
if [ -x "$backtracer" ]; then
  install -m 0755 "$backtracer" "$rootfs/usr/libexec/swift/swift-backtrace-static"
else
  say "no swift-backtrace-static beside the Swift toolchain: the image will print no backtraces"
fi

# CA certificates: licensed fetches identity providers' keys over HTTPS.
[ -f /etc/ssl/certs/ca-certificates.crt ] || { say "missing /etc/ssl/certs/ca-certificates.crt (Debian: apt-get install ca-certificates)"; exit 1; }
install -m 0644 /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/ca-certificates.crt"
printf 'root:x:0:0:root:/root:/usr/sbin/nologin\nlicensed:x:10001:10001:licensed:/var/lib/licensed:/usr/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n' > "$rootfs/etc/passwd"
printf 'root:x:0:\nlicensed:x:10001:\nnogroup:x:65534:\n' > "$rootfs/etc/group"
printf 'passwd: files\ngroup: files\nhosts: files dns\n' > "$rootfs/etc/nsswitch.conf"
chmod 0644 "$rootfs"/etc/{passwd,group,nsswitch.conf}
chmod 1777 "$rootfs/tmp"
chmod 0700 "$rootfs/var/lib/licensed"

# One layer, the same bytes for the same files: every entry carries the commit's time.
mtime="$(git log -1 --format=%ct 2>/dev/null || echo 0)"
python3 Tools/oci_layer.py "$rootfs" "$stage/layer.tar" --mtime "$mtime" --owner /var/lib/licensed=10001:10001
created="$(date -u -d "@$mtime" +%Y-%m-%dT%H:%M:%SZ)"

rm -rf "$out"
mkdir -p "$(dirname "$out")"
umoci init --layout "$out"
umoci new --image "$out:$tag"
umoci raw add-layer --image "$out:$tag" --history.created "$created" --history.created_by "Tools/build-image.sh" "$stage/layer.tar"
umoci config --image "$out:$tag" \
  --created "$created" --os linux --architecture amd64 \
  --config.user 10001:10001 \
  --config.entrypoint /usr/local/bin/licensed \
  --config.cmd --data-dir --config.cmd /var/lib/licensed \
  --config.cmd --listen --config.cmd 0.0.0.0:7443 \
  --config.cmd --ops-listen --config.cmd 0.0.0.0:9090 \
  --config.env PATH=/usr/local/bin:/usr/bin:/bin \
  --config.env SWIFT_BACKTRACE=enable=yes,sanitize=yes,threads=all,images=none,interactive=no,swift-backtrace=/usr/libexec/swift/swift-backtrace-static \
  --config.workingdir /var/lib/licensed \
  --config.volume /var/lib/licensed \
  --config.exposedports 7443/tcp --config.exposedports 9090/tcp \
  --config.stopsignal SIGTERM \
  --config.label "org.opencontainers.image.title=licensed" \
  --config.label "org.opencontainers.image.version=$version" \
  --config.label "org.opencontainers.image.revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)" \
  --no-history
umoci gc --layout "$out"

if [ -n "$archive" ]; then
  rm -f "$archive"
  skopeo copy --quiet "oci:$out:$tag" "docker-archive:$archive:coditect/licensed:$tag"
fi

# Sizes, read back through skopeo (what a registry would be sent) and from the layer itself.
compressed="$(skopeo inspect --raw "oci:$out:$tag" | python3 -c 'import json,sys; print(sum(l["size"] for l in json.load(sys.stdin)["layers"]))')"
unpacked="$(stat -c %s "$stage/layer.tar")"
echo "image oci:$out:$tag  layer $((compressed / 1024 / 1024)) MiB compressed, root filesystem $((unpacked / 1024 / 1024)) MiB"
