# Test control plane (kit/cluster): include from the top-level Makefile.
#   make cluster-build   build missing binaries into $(SIESTA_CACHE)/cluster/<k8s>/bin
#   make cluster-up      start the cluster (builds first); last line: the kubeconfig path
#   make cluster-down    stop it, leaving no process behind
CLUSTER_DIR_MK := $(dir $(lastword $(MAKEFILE_LIST)))

.PHONY: cluster-build cluster-up cluster-down
cluster-build:
	@bash $(CLUSTER_DIR_MK)build.sh
cluster-up:
	@bash $(CLUSTER_DIR_MK)up.sh
cluster-down:
	@bash $(CLUSTER_DIR_MK)down.sh
