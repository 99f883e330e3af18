#!/usr/bin/env bash
# The demo, in one command on a fresh machine (as root):
#   bash tests/demo.sh                          # MariaDB: examples/basic.yaml
#   EBISU_DEMO_FLAVOR=mysql bash tests/demo.sh  # MySQL 9.7: examples/mysql.yaml
# It builds whatever is missing, starts the local Kubernetes cluster, installs
# ebisu with its Helm chart, applies the example, waits until the three
# instances are Ready, writes a row through the primary Service, reads it
# back through the read Service (a replica) and prints `kubectl get myc`.
# Every user-facing command is echoed as it runs. The cluster keeps running
# afterwards, until `target/debug/testcluster down`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [[ $(id -u) != 0 ]]; then
  echo "demo: the local cluster needs root (network namespaces, bind mounts)" >&2
  exit 1
fi

NS=demo
FLAVOR=${EBISU_DEMO_FLAVOR:-mariadb}
case $FLAVOR in
  # The client pods run the flavor's own client. MariaDB's servers here
  # have no TLS certificate; MySQL makes one at initialisation, and its
  # default password plugin wants TLS (or a socket) for the first login.
  mariadb) CLUSTER=orders EXAMPLE=examples/basic.yaml CLIENT_IMAGE=mariadb:10.11 CLIENT=mariadb TLS=skip-ssl ;;
  mysql) CLUSTER=inventory EXAMPLE=examples/mysql.yaml CLIENT_IMAGE=mysql:8.4 CLIENT=mysql TLS=ssl-mode=REQUIRED ;;
  *)
    echo "demo: EBISU_DEMO_FLAVOR must be mariadb or mysql, not '$FLAVOR'" >&2
    exit 2
    ;;
esac
state_dir=${EBISU_TESTCLUSTER_DIR:-/tmp/ebisu-testcluster}

step() { printf '\n==> %s\n' "$*" >&2; }
# Shows a command the way a user would type it, then runs it.
run() {
  printf '$ %s\n' "$*" >&2
  "$@"
}
fail() {
  echo "demo: $*" >&2
  exit 1
}

step "machine setup (tests/setup.sh)"
bash tests/setup.sh

step "control plane binaries (tests/build-controlplane.sh; cached after the first run)"
EBISU_CONTROLPLANE_BIN=$(bash tests/build-controlplane.sh)
export EBISU_CONTROLPLANE_BIN
# kubectl and helm as pinned with the control plane, not whatever the machine has.
export PATH=$EBISU_CONTROLPLANE_BIN:$PATH

if [[ $FLAVOR == mysql ]]; then
  step "MySQL image root file system (tests/build-rootfs.sh; cached after the first run)"
  bash tests/build-rootfs.sh >/dev/null
fi

step "ebisu's images: static binaries for linux/amd64 and linux/arm64 (tests/build-images.sh)"
bash tests/build-images.sh

step "the local cluster (cargo build -p ebisu-testcluster)"
cargo build --locked -p ebisu-testcluster --bin testcluster >&2

step "starting the local cluster: 6 nodes in 3 zones, EBS-like volumes, an OCI registry"
./target/debug/testcluster --state-dir "$state_dir" up >/dev/null
export KUBECONFIG=$state_dir/kubeconfig
run kubectl get nodes -L topology.kubernetes.io/zone

step "pushing the images to the local registry, which the nodes use for ghcr.io"
# The chart's defaults name ghcr.io/ebisu-dev/ebisu-{operator,sidecar}:<version>;
# the nodes pull ghcr.io's images from the local registry, as a mirror.
run bash tests/build-images.sh --push 127.0.0.1:25000/ebisu-dev

step "installing ebisu with its Helm chart"
# The local cluster's EC2 API and its credentials, as IRSA would give them on EKS.
run helm install ebisu charts/ebisu --namespace ebisu-system --create-namespace --wait --timeout 120s \
  --set aws.envFromSecret=local-ec2

step "applying $EXAMPLE"
run kubectl create namespace "$NS"
run kubectl -n "$NS" apply -f "$EXAMPLE"

step "waiting for 3 Ready instances (status as the operator reports it)"
last=""
started=$SECONDS
for _ in $(seq 1 300); do
  status=$(kubectl -n "$NS" get myc "$CLUSTER" -o jsonpath='{.status.readyReplicas} {.status.phase}' 2>/dev/null || true)
  now=$(kubectl -n "$NS" get myc "$CLUSTER" -o jsonpath='primary={.status.currentPrimary} ready={.status.readyReplicas}/{.spec.replicas} phase={.status.phase}' 2>/dev/null || true)
  if [[ $now != "$last" ]]; then
    printf '  %3ss  %s\n' $((SECONDS - started)) "$now" >&2
    last=$now
  fi
  [[ $status == "3 Running" ]] && break
  sleep 1
done
[[ ${status:-} == "3 Running" ]] || fail "the cluster did not become Ready in 5 minutes; see kubectl -n $NS describe myc $CLUSTER"
run kubectl -n "$NS" get pods -L ebisu.dev/role -o wide

step "creating an application user on the primary as root"
# Where a user would `kubectl exec` into the primary, the demo reaches the
# same server socket from the host: the local cluster has no exec.
primary=$(kubectl -n "$NS" get myc "$CLUSTER" -o jsonpath='{.status.currentPrimary}')
uid=$(kubectl -n "$NS" get pod "$primary" -o jsonpath='{.metadata.uid}')
socket=/tmp/ebisu-demo-$$.sock # the real path is longer than a socket address may be
ln -sf "$state_dir/pods/${NS}_${primary}_${uid}/volumes/run/mysqld.sock" "$socket"
trap 'rm -f "$socket"' EXIT
MYSQL_PWD=$(kubectl -n "$NS" get secret "$CLUSTER-credentials" -o go-template='{{index .data "root-password" | base64decode}}')
app_password=$(openssl rand -hex 16)
MYSQL_PWD=$MYSQL_PWD mariadb --skip-ssl -S "$socket" -uroot -e "
  CREATE DATABASE demo;
  CREATE TABLE demo.orders (id INT PRIMARY KEY, item TEXT);
  CREATE USER app@'%' IDENTIFIED BY '$app_password';
  GRANT SELECT, INSERT, UPDATE, DELETE ON demo.* TO app@'%';"
rm -f "$socket"
echo "  created user app with a generated password, kept in Secret $NS/app-client" >&2
kubectl -n "$NS" create secret generic app-client \
  --from-literal=client.cnf="$(printf '[client]\nuser=app\npassword=%s\n%s\n' "$app_password" "$TLS")" >/dev/null

# A one-shot client pod: a shell script with the flavor's client and the
# app's credentials from the Secret, reaching servers by Service name.
client() {
  local name=$1 script=$2
  kubectl -n "$NS" apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Pod
metadata:
  name: $name
spec:
  restartPolicy: Never
  containers:
    - name: client
      image: $CLIENT_IMAGE
      command: [sh, -c]
      args:
        - |
$(sed 's/^/          /' <<<"$script")
      volumeMounts: [{name: app, mountPath: /etc/app, readOnly: true}]
  volumes: [{name: app, secret: {secretName: app-client}}]
EOF
  local phase=""
  for _ in $(seq 1 90); do
    phase=$(kubectl -n "$NS" get pod "$name" -o jsonpath='{.status.phase}')
    [[ $phase == Succeeded || $phase == Failed ]] && break
    sleep 1
  done
  kubectl -n "$NS" logs "$name" >&2 || true
  kubectl -n "$NS" delete pod "$name" --wait=false >/dev/null
  [[ $phase == Succeeded ]] || fail "client pod $name ended ${phase:-unfinished}"
}

step "writing a row through the primary Service ($CLUSTER-primary), from a pod"
client write-order "$(
  cat <<EOF
$CLIENT --defaults-extra-file=/etc/app/client.cnf -h $CLUSTER-primary --table -e "
  INSERT INTO demo.orders VALUES (1, 'green tea');
  SELECT @@hostname AS written_on, @@read_only AS read_only"
EOF
)"

step "reading it back through the read Service ($CLUSTER-read: replicas only), from a pod"
client read-order "$(
  cat <<EOF
sql() { $CLIENT --defaults-extra-file=/etc/app/client.cnf -h $CLUSTER-read "\$@"; }
# Replication is asynchronous to the client: wait until the row is applied.
for i in \$(seq 30); do
  if [ "\$(sql -N -e 'SELECT COUNT(*) FROM demo.orders')" = 1 ]; then
    sql --table -e "SELECT @@hostname AS read_on, @@read_only AS read_only, id, item FROM demo.orders"
    exit \$?
  fi
  sleep 1
done
echo "the row did not reach a replica within 30 s" >&2
exit 1
EOF
)"

step "the cluster as kubectl shows it"
run kubectl -n "$NS" get myc

cat <<EOT

ebisu is running a replicated $FLAVOR cluster on the local Kubernetes cluster.

  export KUBECONFIG=$KUBECONFIG PATH=$EBISU_CONTROLPLANE_BIN:\$PATH
  kubectl -n $NS get myc,pods,pvc -L ebisu.dev/role
  kubectl -n $NS scale myc/$CLUSTER --replicas=5      # new replicas are cloned from a replica
  kubectl -n $NS delete pod $CLUSTER-1                # it returns on its own volume
  kubectl -n ebisu-system logs deploy/ebisu-operator

  target/debug/testcluster status                     # nodes and readiness
  target/debug/testcluster node stop NAME             # simulate a crashed machine
  target/debug/testcluster down                       # stop everything, remove all state
EOT
