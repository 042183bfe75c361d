#!/usr/bin/env bash
# Makes the certificates of an rdb cluster with openssl, non-interactively:
# a cluster CA, one certificate per node (its host name and IP address in the
# subject alternative names; usable as TLS server and client, since peers
# use mutual TLS), and one client certificate for the HTTP API
# (`--client-ca`). Keys are P-256 ECDSA, PKCS#8 PEM.
#
#   deploy/gen-certs.sh OUT_DIR NAME:IP [NAME:IP ...]
#   deploy/gen-certs.sh /etc/rdb/tls rdb1:10.0.0.1 rdb2:10.0.0.2 rdb3:10.0.0.3
#
# Writes OUT_DIR/ca.pem, ca-key.pem (keep it offline), NAME.pem, NAME-key.pem
# for each node, client.pem, client-key.pem; prints what it made. Validity:
# RDB_CERT_DAYS (default 825).
set -euo pipefail

usage() { echo "usage: $0 OUT_DIR NAME:IP [NAME:IP ...]" >&2; exit 2; }
[ $# -ge 2 ] || usage
OUT="$1"; shift
DAYS="${RDB_CERT_DAYS:-825}"
mkdir -p "$OUT"
cd "$OUT"
umask 077

new_key_and_csr() { # name subject
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout "$1-key.pem" -out "$1.csr" -subj "$2" 2>/dev/null
}

sign() { # name extensions-file
  openssl x509 -req -in "$1.csr" -CA ca.pem -CAkey ca-key.pem -CAcreateserial \
    -out "$1.pem" -days "$DAYS" -sha256 -extfile "$2" 2>/dev/null
  rm -f "$1.csr" "$2"
}

openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
  -keyout ca-key.pem -out ca.pem -days "$DAYS" -sha256 -subj "/CN=rdb cluster CA" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
echo "CA:     $OUT/ca.pem (key $OUT/ca-key.pem)"

for spec in "$@"; do
  name="${spec%%:*}"
  ip="${spec#*:}"
  if [ -z "$name" ] || [ -z "$ip" ] || [ "$name" = "$spec" ]; then usage; fi
  new_key_and_csr "$name" "/CN=$name"
  cat > "$name.ext" <<EXT
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth,clientAuth
subjectAltName=DNS:$name,IP:$ip
EXT
  sign "$name" "$name.ext"
  echo "node:   $OUT/$name.pem (key $OUT/$name-key.pem), names $name and $ip"
done

new_key_and_csr client "/CN=rdb client"
cat > client.ext <<EXT
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=clientAuth
EXT
sign client client.ext
rm -f ca.srl
chmod 644 ./*.pem
chmod 600 ./*-key.pem
echo "client: $OUT/client.pem (key $OUT/client-key.pem)"
