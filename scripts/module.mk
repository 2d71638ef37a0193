# SPDX-License-Identifier: GPL-2.0
#
# Build of the Rust-comms dlm.ko, included by the top-level Makefile.
#
#   make                 build build/kmod/dlm.ko against $(KDIR)
#   make CLIPPY=1        the same, with the Rust crate checked by clippy
#   make modules_install install it under /lib/modules/<release>/updates/
#                        (or $(INSTALL_MOD_PATH)/lib/modules/...), where modprobe
#                        prefers it over the stock fs/dlm/dlm.ko
#   make module-clean    remove build/kmod
#
# DLMRS_KMOD=DIR builds elsewhere (e.g. one directory per kernel flavour);
# LLVM=1 is passed on automatically for a clang-built $(KDIR).
#
# The lock-manager C files are not part of dlm-rs: they are symlinked from
# $(KDIR)/fs/dlm at build time into the gitignored build/kmod, next to
# symlinks to our Rust crate and C shim, and Kbuild links all of them into one
# dlm.ko.  config.c, lowcomms.c and midcomms.c are left out; the Rust crate
# provides their ABI (config.h, lowcomms.h and midcomms.h stay: the C files
# include them).

DLMRS_TOP   := $(abspath $(dir $(lastword $(MAKEFILE_LIST)))/..)
DLMRS_KMOD  := $(DLMRS_TOP)/build/kmod
# Every fs/dlm C file except the three we replace.
DLMRS_C_OUT := config.c lowcomms.c midcomms.c
DLMRS_JOBS  ?= 2
# A tree built with clang (the debug flavour) needs the same LLVM toolchain for
# its modules: LLVM=-<major> when only the versioned clang-<major> exists.
dlmrs_clang_major = $(shell sed -n 's/^CONFIG_CLANG_VERSION=\([0-9]*\)[0-9]\{4\}$$/\1/p' "$(KDIR)/.config" 2>/dev/null)
# scripts/kernel.sh records the flags it built the tree with in .dlmrs-make-flags.
dlmrs_llvm = $(if $(LLVM),LLVM=$(LLVM),$(if $(wildcard $(KDIR)/.dlmrs-make-flags),$(shell cat "$(KDIR)/.dlmrs-make-flags"),$(if $(shell grep -s '^CONFIG_CC_IS_CLANG=y' "$(KDIR)/.config"),$(if $(shell command -v clang),LLVM=1,LLVM=-$(dlmrs_clang_major)))))

.PHONY: modules modules_install module-clean module-links

module-links:
	@test -d "$(KDIR)/fs/dlm" || { echo "dlm-rs: $(KDIR)/fs/dlm not found (KDIR=$(KDIR))" >&2; exit 1; }
	@test -f "$(KDIR)/rust/libkernel.rmeta" || { echo "dlm-rs: $(KDIR) has no built rust/ (needs CONFIG_RUST=y and a built tree)" >&2; exit 1; }
	@mkdir -p "$(DLMRS_KMOD)"
	@find "$(DLMRS_KMOD)" -maxdepth 1 -type l -delete
	@for f in "$(KDIR)"/fs/dlm/*.c "$(KDIR)"/fs/dlm/*.h; do \
		b=$$(basename "$$f"); \
		case " $(DLMRS_C_OUT) " in *" $$b "*) continue;; esac; \
		ln -sf "$$f" "$(DLMRS_KMOD)/$$b"; \
	done
	@ln -sf "$(DLMRS_TOP)/Kbuild" "$(DLMRS_KMOD)/Kbuild"
	@ln -sf "$(DLMRS_TOP)/rust/dlm_comms.rs" "$(DLMRS_KMOD)/dlm_comms.rs"
	@ln -sfn "$(DLMRS_TOP)/rust/proto" "$(DLMRS_KMOD)/proto"
	@ln -sfn "$(DLMRS_TOP)/rust/comms" "$(DLMRS_KMOD)/comms"
	@for f in "$(DLMRS_TOP)"/rust/shim/*.c "$(DLMRS_TOP)"/rust/shim/*.h; do \
		ln -sf "$$f" "$(DLMRS_KMOD)/$$(basename "$$f")"; \
	done

modules: module-links
	$(MAKE) -C "$(KDIR)" M="$(DLMRS_KMOD)" -j$(DLMRS_JOBS) $(dlmrs_llvm) $(if $(CLIPPY),CLIPPY=1) modules
	@echo "dlm-rs: built $(DLMRS_KMOD)/dlm.ko"

modules_install: modules
	$(MAKE) -C "$(KDIR)" M="$(DLMRS_KMOD)" INSTALL_MOD_DIR=updates $(dlmrs_llvm) \
		$(if $(INSTALL_MOD_PATH),INSTALL_MOD_PATH="$(INSTALL_MOD_PATH)") modules_install

module-clean:
	rm -rf "$(DLMRS_KMOD)"
