#!/usr/bin/env bash
# Installs every package blkship needs to build, test and benchmark, from Debian.
# Idempotent: when everything is present it installs nothing and touches no network.
set -euo pipefail

packages=(
  # build
  build-essential cmake pkg-config
  libuv1-dev libssl-dev libxen-dev nbdkit-plugin-dev libcmocka-dev libjson-c-dev
  libxxhash-dev  # block checksums (checksum resync, verify)
  libinih-dev  # one configuration file per resource (INI)
  libsystemd-dev  # sd_notify: readiness, status and the watchdog under systemd
  libmicrohttpd-dev  # the agents' Prometheus endpoint (headers; the library is opened with --metrics)
  libzstd-dev  # --compress zstd: data frames compressed for slow links
  librbd-dev  # rbd: replica targets (librbd, librados)
  go-md2man  # the manual pages' troff, from their Markdown
  dpkg-dev man-db  # the Debian package (CPack, dpkg-shlibdeps) and its test
  # run and test
  nbdkit qemu-utils fio libnbd-bin openssl util-linux iproute2 iptables xxd procps
  python3   # the tests check JSON with its json module, and fake agents
  python3-libnbd  # scripted NBD writers (tests/pit)
  systemd   # systemd-analyze: the units checked (verify, the offline security rating)
  prometheus curl  # promtool checks the agents' metrics; curl scrapes them
  strace    # test-busy-report.sh delays connect() with its fault injection
  # fuzzing (tests/fuzz): clang and its libFuzzer and sanitizer runtimes
  clang clang-14 libclang-rt-14-dev
  mount e2fsprogs
  ceph-mon ceph-osd ceph-common  # a one-node cluster for the RBD target tests (scripts/ceph-cluster.sh)
  fuse3     # fusermount3, to unmount the nbdfuse files of the power-loss tests
  # benchmarks: the peers they compare against
  qemu-system-common rsync time
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done

if [ "${#missing[@]}" -eq 0 ]; then
  echo "install-deps: all ${#packages[@]} packages present"
  exit 0
fi

echo "install-deps: installing ${missing[*]}"
if [ "$(id -u)" -ne 0 ]; then
  SUDO=sudo
else
  SUDO=
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
