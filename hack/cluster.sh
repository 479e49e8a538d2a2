#!/usr/bin/env bash
# A one-node Kubernetes on this machine (root, Linux): the local control plane plus containerd,
# kubelet, kube-scheduler, kube-proxy, the CNI bridge and CoreDNS, with the operator's and the
# gallery's images imported. Then: kubectl apply -k manifests/ && kubectl apply -k examples/gallery
#
#   hack/cluster.sh up       build what is missing, start the node, print the kubeconfig to use
#   hack/cluster.sh down     stop it and leave the host as it was (safe to repeat)
#   hack/cluster.sh status   which of its components run
source "$(dirname "${BASH_SOURCE[0]}")/bootstrap.sh"
case "${1:-}" in
  up)
    prepare_node
    exec python -m servicelink.testing.node up "$IMAGES_DIR/servicelink.tar" "$IMAGES_DIR/gallery-app.tar"
    ;;
  down | status) exec python -m servicelink.testing.node "$1" ;;
  *) echo "usage: hack/cluster.sh up|down|status" >&2; exit 2 ;;
esac
