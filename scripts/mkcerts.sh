#!/usr/bin/env bash
# Makes a throwaway CA and certificates for a primary and a secondary:
#   DIR/ca.crt, DIR/primary.{crt,key}, DIR/secondary.{crt,key}
# The certificates carry the names "primary" and "secondary" (SAN DNS).
# Usage: mkcerts.sh DIR [DAYS]   (DAYS 0 or less: certificates already expired;
# an existing DIR/ca.key is reused, so expired and valid ones share the CA)
set -euo pipefail
dir=$1
days=${2:-30}
mkdir -p "$dir"
cd "$dir"

if [ ! -f ca.key ]; then
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -keyout ca.key -out ca.crt -days 3650 -subj "/CN=blkship test CA" 2>/dev/null
fi
for name in primary secondary; do
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -keyout "$name.key" -out "$name.csr" -subj "/CN=$name" 2>/dev/null
    printf 'subjectAltName=DNS:%s\nextendedKeyUsage=serverAuth,clientAuth\n' "$name" > "$name.ext"
    if [ "$days" -ge 1 ]; then
        openssl x509 -req -in "$name.csr" -CA ca.crt -CAkey ca.key -CAcreateserial \
            -out "$name.crt" -days "$days" -extfile "$name.ext" 2>/dev/null
    else
        # Expired: valid from two days ago until yesterday.  Only "openssl
        # ca" can set both dates in OpenSSL 3.0.
        mkdir -p ca.db && : > ca.db/index.txt
        [ -f ca.db/serial ] || echo 1000 > ca.db/serial
        printf '[ca]\ndefault_ca=d\n[d]\ndatabase=ca.db/index.txt\nserial=ca.db/serial\nnew_certs_dir=ca.db\ndefault_md=sha256\npolicy=p\nunique_subject=no\n[p]\ncommonName=supplied\n' > ca.cnf
        openssl ca -batch -config ca.cnf -cert ca.crt -keyfile ca.key -in "$name.csr" \
            -out "$name.crt" -extfile "$name.ext" -notext \
            -startdate "$(date -u -d '2 days ago' +%Y%m%d%H%M%SZ)" \
            -enddate "$(date -u -d '1 day ago' +%Y%m%d%H%M%SZ)" 2>/dev/null
    fi
    rm -f "$name.csr" "$name.ext"
done
chmod 600 ./*.key
