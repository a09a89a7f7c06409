#!/usr/bin/env bash
# A real single-node Kubernetes control plane on loopback for the e2e tests, built from
# Debian packages only (no docker, no GitHub, no Go module proxy):
#   etcd (etcd-server) + kube-apiserver + kube-controller-manager + kubectl, built from
#   Debian's `kubernetes` source package (upstream 1.20.2, vendored) with Debian's Go.
# No kubelet and no scheduler: Pods stay Pending. Deployments still get their ReplicaSets
# and Pods, and the garbage collector deletes dependents (custom resources included).
#
#   scripts/kube-sandbox.sh build        # idempotent: ~6.5 min on 2 cores once, then a no-op
#   scripts/kube-sandbox.sh up DIR       # start (~5 s); writes DIR/kubeconfig (admin),
#                                        # DIR/kubeconfig-operator, DIR/sandbox.env (ports,
#                                        # paths), DIR/logs/*.log; builds first if needed
#   scripts/kube-sandbox.sh status DIR   # exit 0 when every component is up
#   scripts/kube-sandbox.sh down DIR     # stop what `up DIR` started (each `up` starts empty)
#   scripts/kube-sandbox.sh bin          # print the directory of kubectl & co (builds if needed)
#   scripts/kube-sandbox.sh built        # exit 0 when built (up would not build first)
#
# Environment:
#   SANDBOX_CACHE            binaries and sources (default ~/.cache/unthrottle-kube-sandbox)
#   SANDBOX_API_PORT, SANDBOX_ETCD_PORT, SANDBOX_ETCD_PEER_PORT, SANDBOX_KCM_PORT
#                            fixed ports (default: free ports picked at random)
#   SANDBOX_OPERATOR_USER    identity of DIR/kubeconfig-operator
#                            (default system:serviceaccount:unthrottle-system:unthrottle)
#   SANDBOX_OPERATOR_GROUPS  its groups, comma-separated (default: the groups Kubernetes
#                            gives that ServiceAccount: system:serviceaccounts,
#                            system:serviceaccounts:NAMESPACE,system:authenticated)
#   SANDBOX_EXTRA_USERS      more static-token identities, one "NAME|USER|GROUP,GROUP" a line;
#                            each gets DIR/kubeconfig-NAME
#   SANDBOX_WATCH_PID        stop the sandbox when this process exits (a test runner's pid)
#   SANDBOX_START_TIMEOUT    seconds each component may take to become healthy (default 90)
#
# The vendor fix. Kubernetes 1.20 vendors github.com/modern-go/reflect2 v1.0.1, which
# declares its own copy of the runtime's map iterator and gets it from
# reflect.mapiterinit. Go 1.18 changed that function to fill a caller-allocated iterator,
# so with Debian's Go (1.19) every json-iterator encode of a map (any custom-resource
# write: objectmeta.GetObjectMeta -> jsoniter Marshal -> sortKeysMapEncoder ->
# UnsafeMapType.UnsafeIterate) dies with `fatal error: fault`. reflect2 v1.0.2 has the
# Go >= 1.18 variant; json-iterator v1.1.12 is the release made against it (the same pair
# upstream Kubernetes moved to for Go 1.18). Both come from Debian's -dev packages and
# replace the vendored copies before the build.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh  (a byte-identical copy of scripts/lib.sh)
source "$SCRIPT_DIR/lib.sh"

CACHE=${SANDBOX_CACHE:-$HOME/.cache/unthrottle-kube-sandbox}
BIN=$CACHE/bin
# Bump when the build recipe changes: a cache built by an older recipe is rebuilt.
RECIPE_ID="unthrottle-kube-sandbox/2 vendor-fix=reflect2-debian+json-iterator-debian"
GOCODE=/usr/share/gocode/src/github.com
TIMEOUT=${SANDBOX_START_TIMEOUT:-90}

die() { echo "kube-sandbox: $*" >&2; exit 1; }
log() { echo "kube-sandbox: $*" >&2; }

# --------------------------------------------------------------------------- build

pkg_version() { dpkg-query -W -f='${Version}' "$1" 2>/dev/null; }

# The stamp names what the binaries were built from; a different recipe, vendor fix, Debian
# reflect2/json-iterator or Go means a rebuild. (src/ and gopath/ may be deleted after a
# build to save space: the binaries and the stamp are all `up` needs.)
build_stamp() {
  printf '%s reflect2=%s json-iterator=%s go=%s\n' "$RECIPE_ID" \
    "$(pkg_version golang-github-modern-go-reflect2-dev)" \
    "$(pkg_version golang-github-json-iterator-go-dev)" "$(go version | awk '{print $3}')"
}

is_built() {
  local b
  for b in kube-apiserver kube-controller-manager kubectl; do [ -x "$BIN/$b" ] || return 1; done
  [ -f "$BIN/STAMP" ] && [ "$(cat "$BIN/STAMP")" = "$(build_stamp)" ]
}

ensure_deb_src() {
  [ -n "$(apt-cache showsrc kubernetes 2>/dev/null)" ] && return 0
  local suite
  suite=$(. /etc/os-release && echo "${VERSION_CODENAME:-bookworm}")
  step "adding a deb-src entry for Debian $suite (the kubernetes source package)"
  as_root tee /etc/apt/sources.list.d/unthrottle-kube-sandbox-src.sources >/dev/null <<SRC
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: $suite
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
  as_root apt-get update -qq
  [ -n "$(apt-cache showsrc kubernetes 2>/dev/null)" ] ||
    die "Debian $suite has no 'kubernetes' source package (it is in bookworm)"
}

# fetch_source: download and extract Debian's kubernetes source; prints the tree's path.
fetch_source() {
  mkdir -p "$CACHE/src"
  cd "$CACHE/src"
  if ! ls kubernetes_*.orig.tar.gz >/dev/null 2>&1; then
    ensure_deb_src
    step "apt-get source --download-only kubernetes"
    apt-get source --download-only kubernetes >/dev/null 2>apt-source.err ||
      { cat apt-source.err >&2; die "apt-get source kubernetes failed"; }
  fi
  local tarball top
  tarball=$(ls kubernetes_*.orig.tar.gz | head -1)
  top=$(tar tzf "$tarball" | head -1 | cut -d/ -f1)
  if [ ! -f "$top/.extracted" ]; then
    step "extracting $tarball"
    rm -rf "$top"
    tar xzf "$tarball"
    touch "$top/.extracted"
  fi
  basename "$tarball" .orig.tar.gz | sed 's/^kubernetes_//' >.source-version
  echo "$CACHE/src/$top"
}

# replace_vendored DEST SRC: the Go files of vendored package DEST become Debian's SRC
# (tests, sub-packages and the vendored LICENSE/README are left out or kept).
replace_vendored() {
  local dest=$1 src=$2 f
  [ -d "$src" ] || die "$src missing (Debian -dev package not installed?)"
  find "$dest" -maxdepth 1 -type f \( -name '*.go' -o -name '*.s' \) -delete
  for f in "$src"/*.go "$src"/*.s; do
    case $f in *_test.go | *'*'*) continue ;; esac
    cp "$f" "$dest/"
  done
}

apply_vendor_fix() {
  local tree=$1
  replace_vendored "$tree/vendor/github.com/modern-go/reflect2" "$GOCODE/modern-go/reflect2"
  replace_vendored "$tree/vendor/github.com/json-iterator/go" "$GOCODE/json-iterator/go"
  # The fixed reflect2 declares the Go >= 1.18 iterator; refuse to build without it.
  grep -q 'mapiterinit(rtype unsafe.Pointer, m unsafe.Pointer, it \*hiter)' \
    "$tree/vendor/github.com/modern-go/reflect2/go_above_118.go" ||
    die "vendored reflect2 lacks the Go >= 1.18 map iterator fix"
}

build() {
  local t0=$SECONDS tree
  ensure_debian_packages golang-go etcd-server \
    golang-github-modern-go-reflect2-dev golang-github-json-iterator-go-dev
  is_built && return 0
  tree=$(fetch_source)
  step "patching vendor/: reflect2 $(pkg_version golang-github-modern-go-reflect2-dev)," \
    "json-iterator $(pkg_version golang-github-json-iterator-go-dev) (Debian)"
  apply_vendor_fix "$tree"

  export GOPATH=$CACHE/gopath GO111MODULE=off CGO_ENABLED=0 GOFLAGS=
  mkdir -p "$GOPATH/src/k8s.io" "$BIN"
  ln -sfn "$tree" "$GOPATH/src/k8s.io/kubernetes"
  cd "$GOPATH/src/k8s.io/kubernetes"

  if [ ! -s pkg/generated/openapi/zz_generated.openapi.go ]; then
    step "openapi-gen (the release tarball does not ship the generated OpenAPI definitions)"
    go build -o "$BIN/openapi-gen" ./vendor/k8s.io/kube-openapi/cmd/openapi-gen
    local dirs
    dirs=$(grep -rl --include=doc.go -E '^// ?\+k8s:openapi-gen=true' pkg staging/src |
      xargs -n1 dirname | sort -u | grep -v -E '_examples|sample-apiserver' |
      sed -e 's#^staging/src/##' -e 's#^pkg/#k8s.io/kubernetes/pkg/#' | paste -sd, -)
    "$BIN/openapi-gen" \
      --input-dirs "$dirs,k8s.io/apimachinery/pkg/api/resource,k8s.io/apimachinery/pkg/runtime,k8s.io/apimachinery/pkg/util/intstr" \
      --output-package k8s.io/kubernetes/pkg/generated/openapi -O zz_generated.openapi \
      --go-header-file hack/boilerplate/boilerplate.generatego.txt --report-filename /dev/null
  fi

  local v=k8s.io/kubernetes/vendor/k8s.io ldflags
  ldflags="-s -w -X $v/component-base/version.gitVersion=v1.20.2"
  ldflags+=" -X $v/component-base/version.gitMajor=1 -X $v/component-base/version.gitMinor=20"
  ldflags+=" -X $v/component-base/version.gitTreeState=clean"
  ldflags+=" -X $v/client-go/pkg/version.gitVersion=v1.20.2"
  step "go build kube-apiserver kube-controller-manager kubectl"
  rm -f "$BIN/STAMP"
  go build -ldflags "$ldflags" -o "$BIN/" ./cmd/kube-apiserver ./cmd/kube-controller-manager ./cmd/kubectl
  build_stamp >"$BIN/STAMP"
  echo "kubernetes source package $(cat "$CACHE/src/.source-version")" >"$BIN/STAMP.info"
  log "built in $((SECONDS - t0)) s: $(cat "$BIN/STAMP")"
}

locked_build() {
  mkdir -p "$CACHE"
  exec 9>"$CACHE/.lock"
  flock 9
  build
  exec 9>&-
}

# --------------------------------------------------------------------------- up / down

port_in_use() { [ -n "$(ss -Hltn "sport = :$1" 2>/dev/null)" ]; }

# pick_port VAR: set VAR to a random unused loopback port not already picked in this run.
PICKED=" "
pick_port() {
  local p i
  for i in $(seq 200); do
    p=$((20000 + RANDOM % 12000))
    case $PICKED in *" $p "*) continue ;; esac
    port_in_use "$p" && continue
    PICKED+="$p "
    printf -v "$1" '%s' "$p"
    return 0
  done
  die "no free port found"
}

# pid_of D NAME: the pid recorded for component NAME if it is still our process.
pid_of() {
  local f=$1/$2.pid pid
  [ -f "$f" ] || return 1
  pid=$(cat "$f")
  [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || return 1
  # Guard against pid reuse: every component's command line names DIR.
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$1/" || return 1
  echo "$pid"
}

fail_component() {
  local d=$1 name=$2 logf=$3 why=$4
  {
    echo "kube-sandbox: $name did not come up ($why). Last lines of $logf:"
    tail -n 40 "$logf" 2>/dev/null | sed 's/^/    /'
  } >&2
  stop_all "$d"
  exit 1
}

# wait_healthy D NAME LOG CHECK...: poll CHECK until it succeeds; fail loudly when the
# process exits or the timeout passes.
wait_healthy() {
  local d=$1 name=$2 logf=$3 deadline=$((SECONDS + TIMEOUT))
  shift 3
  while ! "$@" >/dev/null 2>&1; do
    pid_of "$d" "$name" >/dev/null || fail_component "$d" "$name" "$logf" "process exited"
    [ $SECONDS -lt $deadline ] || fail_component "$d" "$name" "$logf" "not healthy after ${TIMEOUT}s"
    sleep 0.3
  done
}

# start D NAME CMD...: run a component detached (own session, no inherited stdio).
start() {
  local d=$1 name=$2
  shift 2
  setsid "$@" </dev/null >"$d/logs/$name.log" 2>&1 &
  echo $! >"$d/$name.pid"
}

gen_pki() {
  local p=$1/pki
  [ -s "$p/ca.crt" ] && [ -s "$p/apiserver.crt" ] && [ -s "$p/sa.key" ] && return 0
  mkdir -p "$p"
  (
    cd "$p"
    openssl ecparam -genkey -name prime256v1 -noout -out ca.key 2>/dev/null
    openssl req -x509 -new -key ca.key -days 3650 -subj /CN=unthrottle-sandbox-ca -out ca.crt \
      -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \
      2>/dev/null
    openssl ecparam -genkey -name prime256v1 -noout -out apiserver.key 2>/dev/null
    openssl req -new -key apiserver.key -subj /CN=kube-apiserver -out apiserver.csr 2>/dev/null
    cat >apiserver.ext <<EXT
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1, DNS:localhost, DNS:kubernetes, DNS:kubernetes.default, DNS:kubernetes.default.svc, IP:10.96.0.1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
EXT
    openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 \
      -extfile apiserver.ext -out apiserver.crt 2>/dev/null
    openssl genrsa -out sa.key 2048 2>/dev/null
    openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
    chmod 600 ./*.key
  ) || die "openssl failed to create the sandbox PKI in $p"
}

new_token() { head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n'; }

# write_kubeconfig FILE USER TOKEN
write_kubeconfig() {
  cat >"$1" <<KC
apiVersion: v1
kind: Config
clusters:
- name: unthrottle-sandbox
  cluster:
    server: https://127.0.0.1:$API_PORT
    certificate-authority-data: $(base64 -w0 <"$D/pki/ca.crt")
users:
- name: $2
  user:
    token: $3
contexts:
- name: unthrottle-sandbox
  context:
    cluster: unthrottle-sandbox
    user: $2
current-context: unthrottle-sandbox
KC
  chmod 600 "$1"
}

# add_identity NAME USER GROUPS: a static token in tokens.csv and DIR/kubeconfig-NAME
add_identity() {
  local name=$1 user=$2 groups=$3 token file
  token=$(new_token)
  printf '%s,%s,%s,"%s"\n' "$token" "$user" "$user" "$groups" >>"$D/pki/tokens.csv"
  if [ "$name" = admin ]; then file=$D/kubeconfig; else file=$D/kubeconfig-$name; fi
  write_kubeconfig "$file" "$user" "$token"
}

# alive PID: the process exists and is not a zombie.
alive() { [ -r "/proc/$1/stat" ] && ! grep -qE '^[0-9]+ \(.*\) Z' "/proc/$1/stat" 2>/dev/null; }

# stop_all D: SIGTERM every component at once (the data is thrown away by the next `up`,
# so the order does not matter), SIGKILL what is still running after 10 s.
stop_all() {
  local d=$1 name pid pids=()
  for name in watchdog kcm apiserver etcd; do
    if pid=$(pid_of "$d" "$name") && [ "$pid" != $$ ]; then # $$: the watchdog running `down`
      kill "$pid" 2>/dev/null || true
      pids+=("$pid")
    fi
    rm -f "$d/$name.pid"
  done
  local deadline=$((SECONDS + 10))
  for pid in "${pids[@]}"; do
    while alive "$pid" && [ $SECONDS -lt $deadline ]; do sleep 0.1; done
    alive "$pid" && kill -9 "$pid" 2>/dev/null || true
  done
}

up() {
  D=$(realpath -m "$1")
  mkdir -p "$D"/{pki,logs}
  local name
  for name in etcd apiserver kcm; do
    pid_of "$D" "$name" >/dev/null && die "a sandbox is already running in $D (run: $0 down $D)"
  done
  rm -rf "$D/etcd" # every `up` starts from an empty cluster
  local t0=$SECONDS
  for name in ETCD_PORT ETCD_PEER_PORT API_PORT KCM_PORT; do
    local override=SANDBOX_$name
    if [ -n "${!override:-}" ]; then
      port_in_use "${!override}" && die "port ${!override} ($override) is already in use"
      printf -v "$name" '%s' "${!override}"
      PICKED+="${!override} "
    else
      pick_port "$name"
    fi
  done

  gen_pki "$D"
  : >"$D/pki/tokens.csv"
  chmod 600 "$D/pki/tokens.csv"
  add_identity admin admin system:masters
  local op_user=${SANDBOX_OPERATOR_USER:-system:serviceaccount:unthrottle-system:unthrottle}
  local op_groups=${SANDBOX_OPERATOR_GROUPS:-}
  if [ -z "$op_groups" ]; then
    if [[ $op_user == system:serviceaccount:*:* ]]; then
      local ns=${op_user#system:serviceaccount:}
      ns=${ns%%:*}
      op_groups="system:serviceaccounts,system:serviceaccounts:$ns,system:authenticated"
    else
      op_groups=system:authenticated
    fi
  fi
  add_identity operator "$op_user" "$op_groups"
  local line n u g
  while IFS= read -r line; do
    [ -n "$line" ] || continue
    IFS='|' read -r n u g <<<"$line"
    [[ $n =~ ^[A-Za-z0-9_.-]+$ ]] && [ -n "$u" ] ||
      die "bad SANDBOX_EXTRA_USERS line (want NAME|USER|GROUP,GROUP): $line"
    [ "$n" != admin ] && [ "$n" != operator ] || die "SANDBOX_EXTRA_USERS: '$n' is reserved"
    add_identity "$n" "$u" "$g"
  done <<<"${SANDBOX_EXTRA_USERS:-}"

  start "$D" etcd etcd --name sandbox --data-dir "$D/etcd" \
    --listen-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster "sandbox=http://127.0.0.1:$ETCD_PEER_PORT"
  wait_healthy "$D" etcd "$D/logs/etcd.log" curl -fsS "http://127.0.0.1:$ETCD_PORT/health"

  start "$D" apiserver "$BIN/kube-apiserver" \
    --etcd-servers "http://127.0.0.1:$ETCD_PORT" \
    --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$API_PORT" \
    --tls-cert-file "$D/pki/apiserver.crt" --tls-private-key-file "$D/pki/apiserver.key" \
    --client-ca-file "$D/pki/ca.crt" --cert-dir "$D/pki" \
    --token-auth-file "$D/pki/tokens.csv" --authorization-mode RBAC \
    --service-account-key-file "$D/pki/sa.pub" \
    --service-account-signing-key-file "$D/pki/sa.key" \
    --service-account-issuer https://kubernetes.default.svc \
    --service-cluster-ip-range 10.96.0.0/16 \
    --enable-admission-plugins NamespaceLifecycle,LimitRanger,ResourceQuota \
    --disable-admission-plugins ServiceAccount \
    --allow-privileged=true --profiling=false
  wait_healthy "$D" apiserver "$D/logs/apiserver.log" \
    "$BIN/kubectl" --kubeconfig "$D/kubeconfig" get --raw /readyz

  start "$D" kcm "$BIN/kube-controller-manager" \
    --kubeconfig "$D/kubeconfig" \
    --controllers deployment,replicaset,statefulset,daemonset,garbagecollector,namespace,serviceaccount,serviceaccount-token,clusterrole-aggregation \
    --service-account-private-key-file "$D/pki/sa.key" --root-ca-file "$D/pki/ca.crt" \
    --leader-elect=false --bind-address 127.0.0.1 --secure-port "$KCM_PORT" --port 0 \
    --cert-dir "$D/pki/kcm" --profiling=false
  wait_healthy "$D" kcm "$D/logs/kcm.log" curl -fksS "https://127.0.0.1:$KCM_PORT/healthz"

  cat >"$D/sandbox.env" <<ENV
SANDBOX_DIR=$D
SANDBOX_BIN=$BIN
KUBECTL=$BIN/kubectl
KUBECONFIG=$D/kubeconfig
KUBECONFIG_OPERATOR=$D/kubeconfig-operator
API_SERVER=https://127.0.0.1:$API_PORT
API_PORT=$API_PORT
ETCD_PORT=$ETCD_PORT
ETCD_PEER_PORT=$ETCD_PEER_PORT
KCM_PORT=$KCM_PORT
OPERATOR_USER=$op_user
ENV

  if [ -n "${SANDBOX_WATCH_PID:-}" ]; then
    # A watchdog stops the sandbox when the process that asked for it dies without `down`.
    setsid bash -c 'while kill -0 "$1" 2>/dev/null; do sleep 2; done; exec "$2" down "$3"' \
      kube-sandbox-watchdog "$SANDBOX_WATCH_PID" "$SCRIPT_DIR/kube-sandbox.sh" "$D/" \
      </dev/null >>"$D/logs/watchdog.log" 2>&1 &
    echo $! >"$D/watchdog.pid"
  fi
  log "up in $((SECONDS - t0)) s: API https://127.0.0.1:$API_PORT, kubeconfig $D/kubeconfig"
  echo "$D/kubeconfig"
}

down() {
  local d
  d=$(realpath -m "$1")
  [ -d "$d" ] || die "$d: no such directory"
  stop_all "$d"
}

status() {
  local d name pid ok=0
  d=$(realpath -m "$1")
  [ -f "$d/sandbox.env" ] || { echo "no sandbox in $d"; return 1; }
  for name in etcd apiserver kcm; do
    if pid=$(pid_of "$d" "$name"); then
      echo "$name: running (pid $pid)"
    elif [ ! -f "$d/$name.pid" ]; then
      echo "$name: stopped"
      ok=1
    else
      echo "$name: DIED; last lines of $d/logs/$name.log:"
      tail -n 8 "$d/logs/$name.log" 2>/dev/null | sed 's/^/    /'
      ok=1
    fi
  done
  # shellcheck disable=SC1091
  API_SERVER=$(. "$d/sandbox.env" && echo "$API_SERVER")
  if "$BIN/kubectl" --kubeconfig "$d/kubeconfig" get --raw /readyz >/dev/null 2>&1; then
    echo "apiserver: ready at $API_SERVER"
  else
    echo "apiserver: NOT ready at $API_SERVER"
    ok=1
  fi
  return $ok
}

usage() {
  sed -n '2,/^#   SANDBOX_START_TIMEOUT/p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

case ${1:-} in
  build) locked_build ;;
  built) is_built ;;
  bin) locked_build && echo "$BIN" ;;
  up) [ -n "${2:-}" ] || usage; locked_build; up "$2" ;;
  down) [ -n "${2:-}" ] || usage; down "$2" ;;
  status) [ -n "${2:-}" ] || usage; status "$2" ;;
  *) usage ;;
esac
