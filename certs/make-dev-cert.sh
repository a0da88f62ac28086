#!/usr/bin/env bash
# Makes a development certificate authority and a certificate it signs for
# localhost, 127.0.0.1 and ::1, in the given directory (default: this
# script's directory): dev-ca.crt (trust this in your client), gateway.crt
# and gateway.key (give these to the gateway). Never use them in production.
set -euo pipefail
dir=${1:-$(cd "$(dirname "$0")" && pwd)}
mkdir -p "$dir"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days 30 \
  -subj "/CN=sessiongate development CA" \
  -addext "basicConstraints=critical,CA:TRUE" \
  -addext "keyUsage=critical,keyCertSign,cRLSign" \
  -keyout "$work/ca.key" -out "$dir/dev-ca.crt" 2>/dev/null

openssl req -newkey rsa:2048 -nodes -sha256 -subj "/CN=localhost" \
  -keyout "$dir/gateway.key" -out "$work/gateway.csr" 2>/dev/null
cat > "$work/ext.cnf" <<'EXT'
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1
EXT
openssl x509 -req -sha256 -days 30 -in "$work/gateway.csr" \
  -CA "$dir/dev-ca.crt" -CAkey "$work/ca.key" -CAcreateserial -CAserial "$work/ca.srl" \
  -extfile "$work/ext.cnf" -out "$dir/gateway.crt" 2>/dev/null
chmod 600 "$dir/gateway.key"
echo "wrote $dir/gateway.crt, $dir/gateway.key and $dir/dev-ca.crt (development only, 30 days)"
