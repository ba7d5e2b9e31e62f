#!/bin/sh
# The kata-ts-deploy DaemonSet's container (deploy/kata-ts-deploy.yaml), in the style of kata-deploy:
#   install  copy the release in this image to the host's /opt/kata-ts/<version>, check the host can run
#            it, `kata-ts install --write` on the host, restart containerd if its config changed, label
#            the node; then wait for SIGTERM.
#   cleanup  (the container's preStop) unlabel the node, `kata-ts install --uninstall` on the host,
#            restart containerd if its config changed.
# Everything on the host runs in its namespaces through nsenter on its pid 1 (the pod has hostPID), so
# host paths are host paths. Needs: NODE_NAME (the downward API), kubectl with the pod's ServiceAccount.
set -eu

# The KATA_TS_DEPLOY_* variables exist for test/integration/install.test.ts, which runs this script
# against temp directories and its own namespaces; the DaemonSet sets none of them.
artifacts=${KATA_TS_DEPLOY_ARTIFACTS:-/opt/kata-ts-artifacts}
home=${KATA_TS_DEPLOY_HOME:-/opt/kata-ts}
bin_dir=${KATA_TS_DEPLOY_BIN_DIR:-/usr/local/bin}
host_pid=${KATA_TS_DEPLOY_HOST_PID:-1}
version=$(cat "$artifacts/VERSION")
dest=$home/$version
label=katats.io/kata-ts-runtime
containerd_config=${CONTAINERD_CONFIG:-/etc/containerd/config.toml}

say() { echo "kata-ts-deploy: $*"; }
host() { nsenter --target "$host_pid" --mount --uts --ipc --net --pid -- "$@"; }
config_sum() { host sh -c "sha256sum '$containerd_config' 2>/dev/null || echo none"; }

restart_containerd_if() {
  if [ "$1" = "$2" ]; then
    say "$containerd_config unchanged: containerd not restarted"
    return
  fi
  say "restarting containerd"
  host systemctl restart containerd
  for _ in $(seq 1 30); do
    host systemctl is-active --quiet containerd && return
    sleep 1
  done
  say "containerd did not come back: see journalctl -u containerd on the node"
  exit 1
}

install() {
  : "${NODE_NAME:?NODE_NAME must be set (downward API spec.nodeName)}"
  # $home is the host's /opt/kata-ts (a hostPath mount at the same path): a finished copy is renamed into
  # place, so a half copy is never used, and running pods keep the release they started with.
  if [ ! -e "$dest/dist/bin/kata-ts" ]; then
    rm -rf "$dest.tmp"
    mkdir -p "$home"
    cp -a "$artifacts" "$dest.tmp"
    cat >"$dest.tmp/configuration.toml" <<EOF
# written by kata-ts-deploy: the guest image of this release; other settings are kata-ts's defaults
[hypervisor.qemu]
kernel = "$dest/image/vmlinux"
initrd = "$dest/image/initrd.img"
EOF
    mv "$dest.tmp" "$dest"
    say "copied kata-ts $version to $dest"
  fi
  # The host needs QEMU, iproute2 and util-linux: `check` says what is missing (a TCG-only host passes
  # with a warning). A node that fails is not labelled, and this pod restarts until it is fixed.
  host env KATA_TS_IMAGE_DIR="$dest/image" "$dest/dist/bin/kata-ts" --config "$dest/configuration.toml" check
  before=$(config_sum)
  host "$dest/dist/bin/kata-ts" install --write --bin-dir "$bin_dir" \
    --containerd-config "$containerd_config" --config-path "$dest/configuration.toml"
  restart_containerd_if "$before" "$(config_sum)"
  kubectl label node "$NODE_NAME" "$label=true" --overwrite
  say "node $NODE_NAME is ready for runtimeClassName: kata-ts"
}

cleanup() {
  : "${NODE_NAME:?NODE_NAME must be set (downward API spec.nodeName)}"
  # Unlabel first, so that no new kata-ts pod is scheduled here while the runtime goes away.
  kubectl label node "$NODE_NAME" "$label-" || say "could not unlabel $NODE_NAME (continuing)"
  before=$(config_sum)
  host "$dest/dist/bin/kata-ts" install --uninstall --bin-dir "$bin_dir" --containerd-config "$containerd_config"
  restart_containerd_if "$before" "$(config_sum)"
  # The release stays in $home: kata-ts pods that still run use its QEMU helpers and image.
  say "kata-ts removed from $NODE_NAME's containerd; $dest left for the pods still running"
}

case "${1:-}" in
install)
  # Sleep until the pod is deleted (preStop runs cleanup before the TERM arrives). Short sleeps in
  # the foreground: dash runs the trap when one ends (within 1 s). `sleep infinity & wait` with a
  # trap that kills the sleep was measured to leave the sleep behind in 6 of 40 runs.
  trap 'exit 0' TERM INT
  install
  say "waiting for SIGTERM"
  while :; do sleep 1; done
  ;;
cleanup) cleanup ;;
*)
  echo "usage: kata-ts-deploy.sh install|cleanup" >&2
  exit 2
  ;;
esac
