# The demo (scripts/demo.sh): include from the top-level Makefile.
#   make demo        control plane + Siesta + one request waking a model from zero
#   make demo-down   stop it all
.PHONY: demo demo-down
demo:
	@scripts/demo.sh
demo-down:
	@scripts/demo.sh down
