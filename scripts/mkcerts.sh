#!/usr/bin/env bash
# Makes a throwaway CA and the certificates blkship needs, exactly as
# docs/certificates.md describes them:
#
#   mkcerts.sh DIR [DAYS]
#       DIR/ca.{crt,key}, DIR/ca.crl (a revocation list, empty), and
#       DIR/primary.{crt,key}, DIR/secondary.{crt,key} carrying the names
#       "primary" and "secondary" as DNS subject alternative names.
#       DAYS (default 30) is the certificates' validity; 0 or less makes
#       them already expired.  An existing DIR/ca.key is reused, so expired
#       and valid certificates may share the CA.
#   mkcerts.sh DIR issue NAME SAN [DAYS [CN]]
#       One more certificate, DIR/NAME.{crt,key}, of the same CA with the
#       subject alternative names SAN ("DNS:a,IP:127.0.0.1"; "" for none:
#       only a CN, which blkship refuses) and the subject CN (default NAME).
#   mkcerts.sh DIR revoke NAME
#       Revokes DIR/NAME.crt and rewrites DIR/ca.crl.
#
# Keys are P-256 ECDSA, mode 0600.  Every leaf certificate has
# keyUsage=digitalSignature (critical) and extendedKeyUsage=serverAuth,
# clientAuth: each agent is a TLS server or client depending on its role.
set -euo pipefail
dir=$1
shift
mkdir -p "$dir"
cd "$dir"
umask 077

ca_init() {
    if [ ! -f ca.key ]; then
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
            -keyout ca.key -out ca.crt -days 3650 -subj "/CN=blkship test CA" \
            -addext "basicConstraints=critical,CA:TRUE" \
            -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
    fi
    mkdir -p ca.db
    [ -f ca.db/index.txt ] || : >ca.db/index.txt
    [ -f ca.db/crlnumber ] || echo 1000 >ca.db/crlnumber
    cat >ca.cnf <<'EOF'
[ca]
default_ca = d
[d]
database = ca.db/index.txt
new_certs_dir = ca.db
serial = ca.db/serial
crlnumber = ca.db/crlnumber
default_md = sha256
default_crl_days = 30
policy = p
unique_subject = no
copy_extensions = none
[p]
commonName = supplied
EOF
}

# issue NAME SAN DAYS [CN]: a leaf certificate signed by the CA.
issue() {
    local name=$1 san=$2 days=$3 cn=${4:-$1}
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -keyout "$name.key" -out "$name.csr" -subj "/CN=$cn" 2>/dev/null
    {
        echo "basicConstraints=critical,CA:FALSE"
        echo "keyUsage=critical,digitalSignature"
        echo "extendedKeyUsage=serverAuth,clientAuth"
        [ -z "$san" ] || echo "subjectAltName=$san"
    } >"$name.ext"
    local dates=(-days "$days")
    if [ "$days" -lt 1 ]; then
        # Expired: valid from two days ago until yesterday.
        dates=(-startdate "$(date -u -d '2 days ago' +%Y%m%d%H%M%SZ)"
            -enddate "$(date -u -d '1 day ago' +%Y%m%d%H%M%SZ)")
    fi
    openssl ca -batch -config ca.cnf -cert ca.crt -keyfile ca.key -rand_serial \
        -in "$name.csr" -out "$name.crt" -extfile "$name.ext" -notext "${dates[@]}" 2>/dev/null
    rm -f "$name.csr" "$name.ext"
    chmod 600 "$name.key"
}

gencrl() {
    openssl ca -batch -config ca.cnf -cert ca.crt -keyfile ca.key -gencrl -out ca.crl 2>/dev/null
}

ca_init
case ${1:-} in
issue)
    issue "$2" "$3" "${4:-30}" "${5:-}"
    ;;
revoke)
    openssl ca -batch -config ca.cnf -cert ca.crt -keyfile ca.key -revoke "$2.crt" 2>/dev/null
    gencrl
    ;;
*)
    days=${1:-30}
    for name in primary secondary; do
        issue "$name" "DNS:$name" "$days"
    done
    gencrl
    ;;
esac
chmod 600 ./*.key
chmod 644 ./*.crt
[ ! -f ca.crl ] || chmod 644 ca.crl
