#!/usr/bin/env bash
# The certificates of a Dask cluster with mutual TLS: a certificate authority of its own (the cluster trusts
# it and nothing else) and, for each name given, a certificate it signed, for the scheduler, a worker or a
# client (charflow's CHARFLOW_DASK_TLS_CERT). Dask checks that a peer's certificate was signed by the CA, not
# the host name in it; the names still go in as subjectAltName, for tools that do check.
#
#   bash scripts/make_certs.sh DIR NAME...     e.g.  bash scripts/make_certs.sh certs scheduler 10.0.0.5 client
#
# Writes DIR/ca.pem and DIR/ca-key.pem (made once: a later run signs new names with the same CA), and
# DIR/NAME.pem, DIR/NAME-key.pem for each NAME (kept when present). Keys are ECDSA P-256, readable by their
# owner only; certificates last CERT_DAYS days (default 825). Copy ca.pem, NAME.pem and NAME-key.pem to the
# machine that uses NAME; ca-key.pem signs new members and stays on the machine that made it, offline.
set -euo pipefail

if [[ $# -lt 2 ]]; then
  echo "usage: $0 DIR NAME..." >&2
  exit 2
fi
dir=$1
shift
days=${CERT_DAYS:-825}
mkdir -p "$dir"
umask 077

if [[ ! -f "$dir/ca.pem" ]]; then
  openssl ecparam -name prime256v1 -genkey -noout -out "$dir/ca-key.pem"
  openssl req -x509 -new -key "$dir/ca-key.pem" -sha256 -days "$days" -subj "/CN=charflow cluster CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -out "$dir/ca.pem"
  echo "made $dir/ca.pem (keep $dir/ca-key.pem offline)"
fi

for name in "$@"; do
  if [[ ! "$name" =~ ^[A-Za-z0-9._-]+$ ]]; then
    echo "$0: $name is not a host name, an IPv4 address or a plain name; use letters, digits, '.', '_', '-'" >&2
    exit 2
  fi
  if [[ -f "$dir/$name.pem" ]]; then
    echo "kept $dir/$name.pem"
    continue
  fi
  if [[ "$name" =~ ^[0-9.]+$ ]]; then san="IP:$name"; else san="DNS:$name"; fi
  openssl ecparam -name prime256v1 -genkey -noout -out "$dir/$name-key.pem"
  openssl req -new -key "$dir/$name-key.pem" -subj "/CN=$name" -out "$dir/$name.csr"
  # Both uses: a Dask scheduler or worker serves connections and opens them with the same certificate.
  printf '%s\n' "subjectAltName=$san" "basicConstraints=CA:FALSE" \
    "keyUsage=critical,digitalSignature,keyEncipherment" "extendedKeyUsage=serverAuth,clientAuth" >"$dir/$name.ext"
  openssl x509 -req -in "$dir/$name.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca-key.pem" -CAcreateserial \
    -days "$days" -sha256 -extfile "$dir/$name.ext" -out "$dir/$name.pem" 2>/dev/null
  rm -f "$dir/$name.csr" "$dir/$name.ext"
  echo "made $dir/$name.pem and $dir/$name-key.pem"
done
chmod 644 "$dir"/*.pem
chmod 600 "$dir"/*-key.pem
