# SPDX-License-Identifier: GPL-2.0
#
# dlm-rs top-level Makefile.
#
#   make              build dlm.ko (Rust comms + the lock-manager C files of $(KDIR)/fs/dlm)
#   make kernel       fetch and build the cached test kernel (FLAVOUR=base|debug)
#   make cluster      the main job: boot a 3-node QEMU cluster with our dlm.ko under corosync
#                     and dlm_controld and run lock traffic across it (DLM=stock for the stock
#                     C layer, or a comma-separated per-node list such as DLM=ours,stock,stock;
#                     STACK=static for the harness's static membership controller)
#   make check        every test: host tests of the protocol core, simulator, harness unit
#                     tests and the cluster suite; ends with "N passed, M failed"
#   make check-full   make check, then issue 12's scenarios it leaves out (sctp, multihome,
#                     tcp-failover: all ours and mixed on the base flavour, all ours on the
#                     debug flavour); `bash scripts/check.sh --only full` runs only those
#   make bench        the benchmark (Documentation/benchmarks.rst): the stock C layer and
#                     ours alternated on the same 2-node and 3-node clusters, 5 rounds
#                     each; the table and build/bench/ratios.png (BENCH_ARGS= passes
#                     options to scripts/cluster/bench.py, e.g. --null or --doc)
#
# KDIR defaults to the cached test-kernel tree built by scripts/kernel.sh; pass KDIR= to
# use another Rust-enabled 7.2 tree.

SHELL := /bin/bash
export PATH := $(HOME)/.cargo/bin:$(PATH)
FLAVOUR ?= base
export FLAVOUR

# Evaluated once, and only by the targets that use it.
ifeq ($(origin KDIR),undefined)
KDIR = $(eval KDIR := $(shell bash scripts/kernel.sh))$(KDIR)
endif

.PHONY: all setup kernel tools bench-tools host-check check check-full cluster bench clean

all: modules

setup:
	bash scripts/setup.sh

kernel: setup
	@echo "KDIR=$(KDIR)"

tools:
	$(MAKE) -C tools/dlmt

bench-tools: kernel
	$(MAKE) -C tools/dlmbench KDIR=$(KDIR)

host-check:
	bash scripts/check.sh --only host

check:
	bash scripts/check.sh

check-full:
	bash scripts/check.sh --full

OURS := $(CURDIR)/build/kmod/dlm.ko
DLM ?= ours
STACK ?= controld
dlm_spec = $(subst ours,$(OURS),$(DLM))

cluster: kernel tools modules
	python3 scripts/cluster/run.py --kdir $(KDIR) --dlm $(dlm_spec) --stack $(STACK)

# The static controller for bench: no corosync or dlm_controld sharing the
# guests' emulated CPU with the traffic measured.
bench: kernel tools bench-tools modules
	@mkdir -p build/bench
	BENCH_COMMAND="make bench$(if $(BENCH_ARGS), BENCH_ARGS='$(BENCH_ARGS)')" \
	python3 scripts/cluster/bench.py --kdir $(KDIR) --ours $(OURS) $(BENCH_ARGS) \
		2>&1 | tee build/bench/bench.log; exit $${PIPESTATUS[0]}

clean: module-clean
	rm -rf build
	$(MAKE) -C tools/dlmt clean

-include scripts/module.mk

ifeq ($(wildcard scripts/module.mk),)
.PHONY: modules module-clean
modules:
	@echo "dlm-rs: the Rust dlm.ko build (scripts/module.mk) is not there yet" >&2; exit 1
module-clean:
endif
