#!/usr/bin/env bash
# Builds the e2e node's container images as OCI image archives, without a
# Docker engine or a registry: a root filesystem is packed into one
# uncompressed layer, and the config, manifest and index are written by hand
# (the OCI image-layout spec), so `ctr images import` can load the archive
# straight into containerd.
#
# usage: e2e/node/images.sh IMAGE OUT.tar REF [INPUT...]
#   pause    OUT REF PAUSE_BIN                      the pod sandbox image
#   coredns  OUT REF COREDNS_BIN                    cluster DNS
#   skyvault OUT REF SKYVAULT_BIN OPERATOR_BIN      the data plane and the operator
#                                                   (same layout as the Dockerfile's image)
# REF is the name containerd records (e.g. skyvault.local/skyvault:e2e-1a2b).
# Prints the archive's manifest digest.
set -euo pipefail

[[ $# -ge 4 ]] || { sed -n '2,16p' "$0" >&2; exit 2; }
image="$1" out="$2" ref="$3"
shift 3

work="$(mktemp -d "${TMPDIR:-/tmp}/skyvault-image.XXXXXX")"
trap 'rm -rf "$work"' EXIT
root="$work/rootfs"
mkdir -p "$root" "$work/oci/blobs/sha256"

# The dynamic libraries a binary needs (and the loader), copied at their paths.
copy_libs() { # BIN
  ldd "$1" | awk '/=> \// { print $3 } /^\t\/[^ ]+ \(/ { print $1 }' | sort -u |
    while read -r lib; do
      mkdir -p "$root$(dirname "$lib")"
      cp -L "$lib" "$root$lib"
    done
}

user=0:0
env='["PATH=/usr/local/bin:/usr/bin:/bin"]'
case "$image" in
  pause)
    install -m 0755 "$1" "$root/pause"
    entrypoint='["/pause"]' user=65535:65535
    ;;
  coredns)
    install -m 0755 "$1" "$root/coredns"
    entrypoint='["/coredns"]' user=65532:65532
    ;;
  skyvault)
    mkdir -p "$root/usr/local/bin" "$root/etc" "$root/tmp"
    chmod 1777 "$root/tmp"
    # Debug info is most of a debug build's size and no use in a container.
    strip --strip-debug -o "$root/usr/local/bin/skyvault" "$1"
    strip --strip-debug -o "$root/usr/local/bin/skyvault-operator" "$2"
    chmod 0755 "$root"/usr/local/bin/*
    copy_libs "$1"
    copy_libs "$2"
    # CA certificates, as in distroless: the S3 client refuses to start without
    # a trust store even when the endpoint is plain http.
    mkdir -p "$root/etc/ssl/certs"
    cp -L /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
    printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"$root/etc/passwd"
    printf 'root:x:0:\nnonroot:x:65532:\n' >"$root/etc/group"
    entrypoint='["/usr/local/bin/skyvault"]' user=65532:65532
    env='["PATH=/usr/local/bin:/usr/bin:/bin","SKYVAULT_LOG_FORMAT=json"]'
    ;;
  *)
    echo "images.sh: unknown image '$image'" >&2
    exit 2
    ;;
esac

# A blob named by its digest; echoes "DIGEST SIZE".
blob() { # FILE
  local d s
  d="$(sha256sum "$1" | cut -d' ' -f1)"
  s="$(stat -c %s "$1")"
  mv "$1" "$work/oci/blobs/sha256/$d"
  echo "$d $s"
}

# Reproducible layer: sorted names, no owners, no times.
tar -C "$root" --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -cf "$work/layer.tar" .
read -r layer_digest layer_size < <(blob "$work/layer.tar")

cat >"$work/config.json" <<EOF
{"architecture":"amd64","os":"linux","config":{"User":"$user","Env":$env,"Entrypoint":$entrypoint,"WorkingDir":"/"},"rootfs":{"type":"layers","diff_ids":["sha256:$layer_digest"]},"history":[{"created_by":"e2e/node/images.sh $image"}]}
EOF
read -r config_digest config_size < <(blob "$work/config.json")

cat >"$work/manifest.json" <<EOF
{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:$config_digest","size":$config_size},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:$layer_digest","size":$layer_size}]}
EOF
read -r manifest_digest manifest_size < <(blob "$work/manifest.json")

cat >"$work/oci/index.json" <<EOF
{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:$manifest_digest","size":$manifest_size,"platform":{"architecture":"amd64","os":"linux"},"annotations":{"io.containerd.image.name":"$ref","org.opencontainers.image.ref.name":"${ref##*:}"}}]}
EOF
echo '{"imageLayoutVersion":"1.0.0"}' >"$work/oci/oci-layout"

tar -C "$work/oci" --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -cf "$out.tmp" .
mv -f "$out.tmp" "$out"
echo "sha256:$manifest_digest"
