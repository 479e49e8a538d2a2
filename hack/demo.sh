#!/usr/bin/env bash
# The demo: the image gallery on a local control plane, end to end. Arguments go to `servicelink demo`
# (for example --context my-cluster to run it in a throwaway namespace of an existing cluster).
source "$(dirname "${BASH_SOURCE[0]}")/bootstrap.sh"
exec servicelink demo "$@"
