#!/usr/bin/env bash
# crds/servicelink.yaml (the ServiceLink and WorkloadMapping CRDs) from the models in
# operator/servicelink/model.py (servicelink.crd), and its copies: the chart's crds/ and
# manifests/ (hack/manifests.sh). Edit the models, then run
# this and commit what changed; tests/unit/test_crd.py fails while the files and models differ.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/hack/bootstrap.sh"
"$VENV/bin/python" -m servicelink.crd >"$ROOT/crds/servicelink.yaml"
bash "$ROOT/hack/manifests.sh"
