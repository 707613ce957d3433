# bramble: `make run` provisions the default (lab) inventory, `make test` runs the whole suite.
# Both install what they need on a Debian 12 machine as root: apt packages, then .venv.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= /usr/bin/python3
VENV ?= .venv
BIN := $(VENV)/bin
APT_RUN := python3 python3-venv python3-dev gcc make git \
  podman runc debootstrap iproute2 libnfs-utils
# The lab VPN's cloud-side gateway (LAB_VPN=1, below) runs strongSwan on this machine.
APT_VPN := strongswan-swanctl charon-systemd libstrongswan-standard-plugins libcharon-extra-plugins
# Tests also run real daemons and a systemd container (see ../shared/TESTLAB.md): podman with
# runc, debootstrap for the base image (tests/images/build), dnsmasq's binary (dnsmasq-base: no
# service on this machine), DHCP and TFTP clients, NFS-Ganesha with rpcbind and NFS clients,
# mmdebstrap and qemu-user for the arm64 Pi image (built once into /var/cache/bramble/pi-image).
APT_TEST := $(APT_RUN) podman runc debootstrap dnsmasq-base busybox curl atftp iproute2 \
  nfs-ganesha nfs-ganesha-vfs rpcbind libnfs-utils \
  mmdebstrap qemu-user-static binfmt-support arch-test zstd binutils \
  qemu-system-arm qemu-efi-aarch64 grub-common openssh-client postgresql \
  gcc-avr avr-libc arduino-core-avr mpg123 sox lame \
  $(APT_VPN) nftables \
  chromium chromium-driver
# The lab's size (docs/lab.md "Sizes"): 2 banks of 4 is inventory/lab itself; another size is a
# scaled copy written to build/lab-<banks>x<size> (python -m bramble.lab inventory).
LAB_BANKS ?= 2
LAB_BANK_SIZE ?= 4
# LAB_QEMU=1: the lab also netboots one QEMU arm64 node (docs/lab.md, "The QEMU node").
LAB_QEMU ?=
# LAB_VPN=1: the lab also has a cloud-side strongSwan gateway, and the vpn role runs on its head
# (docs/lab.md, "The VPN"); make installs APT_VPN for it first.
LAB_VPN ?=
on = $(filter 1 true yes,$(1))
# Install the Debian packages of $(1) that are missing (one apt-get for all of them).
define apt_install
@missing=$$(for p in $(1); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; done); \
if [ -n "$$missing" ]; then \
  echo "bramble: installing Debian packages: $$missing"; \
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
fi
endef
LAB_INVENTORY := $(if $(filter 2x4,$(LAB_BANKS)x$(LAB_BANK_SIZE)),,build/lab-$(LAB_BANKS)x$(LAB_BANK_SIZE))
LAB_SCALE := $(if $(LAB_INVENTORY),$(BIN)/python -m bramble.lab inventory --banks $(LAB_BANKS) --bank-size $(LAB_BANK_SIZE) --out $(LAB_INVENTORY),@:)
export PATH := $(abspath $(BIN)):$(PATH)
export ANSIBLE_CONFIG := $(abspath ansible.cfg)

.PHONY: help run test venv venv-test lint unit molecule images lab-qemu-image lab-vpn-deps bench bench-bootstorm bench-fleet bench-dashboard bench-lab lab-down clean

help:
	@echo "make run    - ansible-playbook site.yml on the default inventory (inventory/lab)"
	@echo "             (LAB_BANKS=N LAB_BANK_SIZE=M: a lab of another size; make lab-down likewise)"
	@echo "             (LAB_QEMU=1: also a QEMU arm64 node netbooting the real image, ~5 min of a core)"
	@echo "             (LAB_VPN=1: also a cloud-side strongSwan gateway; the head runs the vpn role)"
	@echo "make test   - lint, unit and integration tests, molecule scenarios"
	@echo "make bench  - benchmarks (written up in docs/benchmarks.md)"

$(VENV)/.apt-run:
	$(call apt_install,$(APT_RUN))
	@mkdir -p $(VENV) && touch $@

$(BIN)/python: $(VENV)/.apt-run
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade 'pip==25.3'

$(VENV)/.run-deps: $(BIN)/python requirements/run.txt pyproject.toml
	$(BIN)/pip install -q -r requirements/run.txt
	$(BIN)/pip install -q --no-deps -e .
	@touch $@

$(VENV)/.apt-test: $(VENV)/.apt-run Makefile
	$(call apt_install,$(APT_TEST))
	@touch $@

$(VENV)/.test-deps: $(VENV)/.run-deps $(VENV)/.apt-test requirements/test.txt
	$(BIN)/pip install -q -r requirements/test.txt
	@touch $@

venv: $(VENV)/.run-deps
venv-test: $(VENV)/.test-deps

run: venv $(if $(call on,$(LAB_QEMU)),lab-qemu-image) $(if $(call on,$(LAB_VPN)),lab-vpn-deps)
	$(LAB_SCALE)
	ANSIBLE_STDOUT_CALLBACK=bramble_progress $(BIN)/ansible-playbook $(if $(LAB_INVENTORY),-i $(LAB_INVENTORY)) \
	  $(if $(call on,$(LAB_QEMU)),-e lab_qemu_node=true) $(if $(call on,$(LAB_VPN)),-e lab_vpn=true) site.yml

test: venv-test images
	tests/run-all

lint: venv-test
	tests/run-all lint

unit: venv-test
	tests/run-all unit

molecule: venv-test images
	tests/run-all molecule

# The systemd Debian image of the molecule scenarios, built once and reused (tests/images/build).
images: $(VENV)/.apt-test
	tests/images/build

# The lab VPN's cloud-side gateway runs strongSwan on this machine (not needed without LAB_VPN).
lab-vpn-deps:
	$(call apt_install,$(APT_VPN))

# The QEMU node's image (the Pi image with the agent), made once on this machine by the QEMU
# node's own test, which also proves that it boots (10-20 minutes the first time; cached under
# /var/cache/bramble/qemu-node, which make run LAB_QEMU=1 copies into the lab's head).
lab-qemu-image:
	@if ls /var/cache/bramble/qemu-node/*/ready >/dev/null 2>&1; then :; else \
	  $(MAKE) venv-test images && $(BIN)/pytest -n 0 -q -p no:cacheprovider tests/integration/test_qemu_node.py; fi

bench: venv-test
	$(BIN)/python bench/inventory.py
	$(BIN)/python bench/warble.py

# About 30 minutes: banks of simulated Pi ROMs against dnsmasq (root, network namespaces).
bench-bootstorm: venv-test
	$(BIN)/python bench/bootstorm.py

clean:
	rm -rf $(VENV) build .pytest_cache .mypy_cache .ruff_cache

# Simulated fleets of 1,050 and 10,500 agents against bramble-server on loopback.
bench-fleet: venv-test
	$(BIN)/python bench/fleet/fleet.py

# The dashboard with 1,050 live Pis in headless Chromium (docs/benchmarks.md, "Dashboard").
bench-dashboard: venv-test
	$(BIN)/python bench/dashboard.py

# make run from nothing, then again (docs/benchmarks.md, "Lab"); tears the lab down.
bench-lab: venv
	$(BIN)/python bench/lab.py

# Remove everything the lab made (namespaces, head container, simulators): docs/lab.md.
lab-down: venv
	$(LAB_SCALE)
	$(BIN)/ansible-playbook $(if $(LAB_INVENTORY),-i $(LAB_INVENTORY)) playbooks/lab_destroy.yml
